package engine

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Check is one readiness condition of the service.
type Check struct {
	// Name names the condition in /readyz's answer.
	Name string
	// Func returns nil when the condition holds. Its error is shown to
	// whoever asks /readyz: it must hold no secret.
	Func func(ctx context.Context) error
}

// NewHTTPHandler returns the service's HTTP endpoints: /metrics (the
// metrics of g), /healthz (200 while the process serves), and /readyz (200
// when every check passes, 503 naming the failing ones otherwise).
func NewHTTPHandler(g prometheus.Gatherer, logger *slog.Logger, checks ...Check) http.Handler {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{
		ErrorLog:      slog.NewLogLogger(logger.Handler(), slog.LevelError),
		ErrorHandling: promhttp.ContinueOnError,
	}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		var b strings.Builder
		ready := true
		for _, c := range checks {
			if err := c.Func(ctx); err != nil {
				ready = false
				fmt.Fprintf(&b, "%s: %v\n", c.Name, err)
				continue
			}
			fmt.Fprintf(&b, "%s: ok\n", c.Name)
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if !ready {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		fmt.Fprint(w, b.String())
	})
	return mux
}

// DirWritable returns a check that creates and removes a file in dir.
func DirWritable(dir string) func(context.Context) error {
	return func(context.Context) error {
		f, err := os.CreateTemp(dir, ".readyz-*")
		if err != nil {
			return fmt.Errorf("state dir is not writable: %w", err)
		}
		name := f.Name()
		err = f.Close()
		if rerr := os.Remove(name); err == nil {
			err = rerr
		}
		if err != nil {
			return fmt.Errorf("state dir is not writable: %w", err)
		}
		return nil
	}
}
