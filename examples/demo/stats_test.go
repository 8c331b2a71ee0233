package main

import (
	"testing"
)

func TestSetBackend(t *testing.T) {
	t.Parallel()
	in := "spec:\n  backend:\n    version: v1 \n    endpoints:\n      - 127.0.0.1:50051\n  # version: v0\n"
	got, err := setBackend(in, "v2", "127.0.0.1:4242")
	if err != nil {
		t.Fatal(err)
	}
	want := "spec:\n  backend:\n    version: v2\n    endpoints:\n      - 127.0.0.1:4242\n  # version: v0\n"
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	if _, err := setBackend(in+"    version: v9\n", "v2", "127.0.0.1:1"); err == nil {
		t.Error("two version lines: no error")
	}
}
