// Command demo is `make demo`: a canary release with Sluice in standalone
// mode, on one machine, with nothing but Go and git installed.
//
// It creates a Git repository from examples/quickstart, starts three
// versions of a gRPC echo service on 127.0.0.1 (v3 fails 30% of its calls),
// Prometheus scraping them, `sluice run`, and a proxyless gRPC client that
// calls the service through Sluice's xDS. Then it releases v2, which Sluice
// rolls out step by step and promotes, and v3, whose analysis fails: Sluice
// sends the traffic back to v2 and pushes a revert commit. It prints what
// happened, with the traffic split the client measured at each step, and
// stops everything it started; with -keep (make demo KEEP=1), only once
// Ctrl-C says so. At the start it prints the URL of `sluice run`'s web
// dashboard and a read token to log in with, to watch it all happen.
//
// Usage, from the repository root after `make build tools`:
//
//	go run ./examples/demo [-v] [-keep]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/sluicehq/sluice/internal/testbin"
)

func main() {
	root, err := moduleRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(2)
	}
	bins := os.Getenv("SLUICE_BIN_DIR")
	if bins == "" {
		bins = filepath.Join(root, "bin")
	}
	o := options{Out: os.Stdout, Settle: 2 * time.Second}
	flag.StringVar(&o.SluiceBin, "sluice", filepath.Join(root, "bin", "sluice"), "the sluice binary (make build)")
	flag.StringVar(&o.PrometheusBin, "prometheus", filepath.Join(bins, "prometheus"), "the prometheus binary (make tools)")
	flag.StringVar(&o.Quickstart, "quickstart", filepath.Join(root, "examples", "quickstart"), "the manifests to start the Git repository with")
	flag.IntVar(&o.Rate, "rate", 200, "calls per second of the load generator")
	verbose := flag.Bool("v", false, "show the log of sluice run")
	timeout := flag.Duration("timeout", 170*time.Second, "give up after this long (not counting -keep's wait)")
	keep := flag.Bool("keep", false, "keep everything running at the end, until Ctrl-C, to look around in the dashboard")
	flag.Parse()
	if *verbose {
		o.SluiceLogs = os.Stderr
	}
	for _, b := range []string{o.SluiceBin, o.PrometheusBin} {
		if _, err := os.Stat(b); err != nil {
			fmt.Fprintf(os.Stderr, "demo: %v (run `make build tools`, or `make demo`)\n", err)
			os.Exit(2)
		}
	}

	// Ctrl-C stops the demo in order; the children are in process groups
	// of their own and hear it only from us.
	interrupted, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(interrupted, *timeout)
	defer cancel()
	if *keep {
		o.Keep = interrupted
	}

	start := time.Now()
	fmt.Println("Sluice demo: a canary release of the gRPC service `echo`, with analysis and automatic rollback")
	if !*keep {
		fmt.Println("(make demo KEEP=1, or -keep, keeps it all running at the end until Ctrl-C)")
	}
	fmt.Println()
	if _, err := play(ctx, o); err != nil {
		if errors.Is(err, context.Canceled) {
			err = errors.New("interrupted")
		}
		fmt.Fprintf(os.Stderr, "\ndemo failed after %s: %v\n", time.Since(start).Round(time.Second), err)
		os.Exit(1)
	}
	fmt.Printf("Done in %s.\n", time.Since(start).Round(time.Second))
}

// moduleRoot is the directory of go.mod above the working directory: the
// demo builds its tools into, and reads its examples from, the repository.
func moduleRoot() (string, error) {
	root, err := testbin.ModuleRoot()
	if err != nil {
		return "", fmt.Errorf("run the demo inside the Sluice repository: %w", err)
	}
	return root, nil
}
