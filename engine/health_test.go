package engine

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestHTTPHandler(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "trailwatch_test_total", Help: "A test counter."}))
	dir := t.TempDir()
	failing := errors.New("source is not reading")
	ready := true
	h := NewHTTPHandler(reg, nil,
		Check{Name: "state_dir", Func: DirWritable(dir)},
		Check{Name: "source", Func: func(context.Context) error {
			if ready {
				return nil
			}
			return failing
		}},
	)
	srv := httptest.NewServer(h)
	defer srv.Close()
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	tests := []struct {
		name     string
		ready    bool
		path     string
		wantCode int
		wantBody string
	}{
		{"metrics", true, "/metrics", 200, "trailwatch_test_total 0"},
		{"healthz", false, "/healthz", 200, "ok"},
		{"readyz ready", true, "/readyz", 200, "source: ok"},
		{"readyz not ready", false, "/readyz", 503, "source: source is not reading"},
		{"unknown path", true, "/nope", 404, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ready = tt.ready
			code, body := get(tt.path)
			if code != tt.wantCode || !strings.Contains(body, tt.wantBody) {
				t.Errorf("GET %s = %d %q, want %d containing %q", tt.path, code, body, tt.wantCode, tt.wantBody)
			}
		})
	}
	t.Run("readyz when the state dir is not writable", func(t *testing.T) {
		ready = true
		if err := os.RemoveAll(dir); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Clean(dir), nil, 0o600); err != nil {
			t.Fatal(err)
		}
		code, body := get("/readyz")
		if code != 503 || !strings.Contains(body, "state_dir: state dir is not writable") {
			t.Errorf("GET /readyz = %d %q, want 503 naming state_dir", code, body)
		}
	})
}
