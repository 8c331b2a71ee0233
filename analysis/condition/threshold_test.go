package condition

import "testing"

func TestThreshold(t *testing.T) {
	t.Parallel()
	cases := []struct {
		expr string
		want float64
		ok   bool
	}{
		{"result[0] >= 0.99", 0.99, true},
		{"result < 5", 5, true},
		{"0.95 <= first(result)", 0.95, true},
		{"all(result, x, x < 0.05)", 0.05, true},
		{"result.exists(x, x > 100)", 100, true},
		{"result[0] > -1.5", -1.5, true},
		{"isNaN(result[0]) || result[0] < 5", 5, true},
		{"size(result) > 0 && result[0] < 0.2", 0.2, true},
		{"result[0] > 1 && result[0] < 5", 0, false},
		{"result[0] == 0", 0, false},
		{"isNaN(result[0])", 0, false},
		{"result[0] >", 0, false},
		{"", 0, false},
	}
	for _, tc := range cases {
		t.Run(tc.expr, func(t *testing.T) {
			t.Parallel()
			got, ok := Threshold(tc.expr)
			if ok != tc.ok || got != tc.want {
				t.Errorf("Threshold(%q) = %v, %v; want %v, %v", tc.expr, got, ok, tc.want, tc.ok)
			}
		})
	}
}
