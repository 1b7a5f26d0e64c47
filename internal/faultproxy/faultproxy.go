// Package faultproxy is a fault-injecting HTTP reverse proxy for tests. It
// sits on a loopback port in front of a real server (moto, Mailpit's API, a
// webhook receiver) and, request by request, either forwards the request or
// injects a fault: an error response such as AWS throttling or an HTTP 500,
// a connection dropped before the request is forwarded, a connection
// dropped after the upstream server has already acted on the request, or a
// response body cut or stalled part way.
//
// The decision is made by a Policy, a plain function of the request and its
// sequence number, so tests can script faults deterministically.
package faultproxy

import (
	"bytes"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// Kind says what the proxy does with one request.
type Kind int

const (
	// Pass forwards the request and relays the response.
	Pass Kind = iota
	// Respond answers with the Fault's Status, Header and Body without
	// forwarding the request.
	Respond
	// DropRequest closes the client connection without forwarding the
	// request or answering.
	DropRequest
	// DropResponse forwards the request, lets the upstream act on it, and
	// then closes the client connection instead of relaying the response.
	DropResponse
	// CutResponse forwards the request and relays the response's status,
	// headers and first Fault.After bytes of body, then closes the
	// connection: a transfer that fails part way.
	CutResponse
	// StallResponse relays the status, headers and first Fault.After bytes
	// of body, then sends nothing more until the client goes away (or the
	// proxy closes): a transfer that hangs part way.
	StallResponse
)

// String names the kind for logs and test failures.
func (k Kind) String() string {
	switch k {
	case Pass:
		return "pass"
	case Respond:
		return "respond"
	case DropRequest:
		return "drop-request"
	case DropResponse:
		return "drop-response"
	case CutResponse:
		return "cut-response"
	case StallResponse:
		return "stall-response"
	}
	return "unknown"
}

// Fault is what the proxy does with one request.
type Fault struct {
	Kind   Kind
	Status int
	Header http.Header
	Body   []byte
	// After is how many bytes of the body CutResponse and StallResponse
	// relay first.
	After int
}

// Forward is the Fault that passes a request through untouched.
var Forward = Fault{Kind: Pass}

// AWSThrottle is the error response AWS JSON-protocol services (CloudWatch
// Logs, SQS...) send when a caller exceeds its request rate.
func AWSThrottle() Fault {
	return AWSError(http.StatusBadRequest, "ThrottlingException", "Rate exceeded")
}

// AWSError is an AWS JSON-protocol (awsJson1_1) error response with the given
// HTTP status, error code and message.
func AWSError(status int, code, message string) Fault {
	h := http.Header{}
	h.Set("Content-Type", "application/x-amz-json-1.1")
	h.Set("X-Amzn-Errortype", code)
	body := []byte(`{"__type":"` + code + `","message":"` + message + `"}`)
	return Fault{Kind: Respond, Status: status, Header: h, Body: body}
}

// Status is a plain-text error response with the given HTTP status.
func Status(code int) Fault {
	h := http.Header{}
	h.Set("Content-Type", "text/plain")
	return Fault{Kind: Respond, Status: code, Header: h, Body: []byte(http.StatusText(code))}
}

// Drop closes the connection before the request is forwarded.
func Drop() Fault { return Fault{Kind: DropRequest} }

// DropAfter forwards the request and closes the connection instead of
// relaying the response.
func DropAfter() Fault { return Fault{Kind: DropResponse} }

// CutAfter relays the response up to n bytes of its body, then closes the
// connection.
func CutAfter(n int) Fault { return Fault{Kind: CutResponse, After: n} }

// StallAfter relays the response up to n bytes of its body, then holds the
// connection without sending more until the client gives up.
func StallAfter(n int) Fault { return Fault{Kind: StallResponse, After: n} }

// Policy decides the fault for one request. n counts the requests the
// policy has been asked about, from 0. body is the request body, already
// read (it is forwarded unchanged). Policies are called one at a time.
type Policy func(r *http.Request, body []byte, n int) Fault

// Random returns a policy that, for requests selected by match (all when
// match is nil), picks each fault in faults with probability p each, and
// forwards otherwise. The seed makes a run reproducible.
func Random(seed uint64, p float64, match func(r *http.Request, body []byte) bool, faults ...Fault) Policy {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	return func(r *http.Request, body []byte, _ int) Fault {
		if match != nil && !match(r, body) {
			return Forward
		}
		x := rng.Float64()
		for _, f := range faults {
			if x < p {
				return f
			}
			x -= p
		}
		return Forward
	}
}

// AWSTarget returns a match function for Random that selects AWS JSON-protocol
// requests for one operation, by the suffix of their X-Amz-Target header
// (e.g. "FilterLogEvents").
func AWSTarget(operation string) func(r *http.Request, body []byte) bool {
	return func(r *http.Request, _ []byte) bool {
		return strings.HasSuffix(r.Header.Get("X-Amz-Target"), "."+operation)
	}
}

// Proxy is a running fault-injecting proxy.
type Proxy struct {
	// URL is the proxy's base URL, to use in place of the upstream's.
	URL string

	mu     sync.Mutex
	policy Policy
	n      int
	counts map[Kind]int
	total  atomic.Int64
}

// Start starts a proxy in front of upstream (a base URL such as
// http://127.0.0.1:5000) that applies policy to every request, and closes
// it when the test ends. A nil policy forwards everything.
func Start(t testing.TB, upstream string, policy Policy) *Proxy {
	t.Helper()
	target, err := url.Parse(upstream)
	if err != nil {
		t.Fatalf("faultproxy: parse upstream %q: %v", upstream, err)
	}
	p := &Proxy{policy: policy, counts: map[Kind]int{}}
	rp := httputil.NewSingleHostReverseProxy(target)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.serve(w, r, rp)
	}))
	t.Cleanup(srv.Close)
	p.URL = srv.URL
	return p
}

// SetPolicy replaces the policy for the requests that follow; nil forwards
// everything.
func (p *Proxy) SetPolicy(policy Policy) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.policy = policy
}

// Count returns how many requests were handled with the given kind.
func (p *Proxy) Count(k Kind) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.counts[k]
}

// Total returns how many requests the proxy has received.
func (p *Proxy) Total() int { return int(p.total.Load()) }

func (p *Proxy) decide(r *http.Request, body []byte) Fault {
	p.mu.Lock()
	defer p.mu.Unlock()
	f := Forward
	if p.policy != nil {
		f = p.policy(r, body, p.n)
	}
	p.n++
	p.counts[f.Kind]++
	return f
}

func (p *Proxy) serve(w http.ResponseWriter, r *http.Request, rp *httputil.ReverseProxy) {
	p.total.Add(1)
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, "faultproxy: read request body", http.StatusBadGateway)
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	f := p.decide(r, body)
	switch f.Kind {
	case Respond:
		for k, vs := range f.Header {
			for _, v := range vs {
				w.Header().Add(k, v)
			}
		}
		w.WriteHeader(f.Status)
		_, _ = w.Write(f.Body)
	case DropRequest:
		hijackClose(w)
	case DropResponse:
		rec := httptest.NewRecorder()
		rp.ServeHTTP(rec, r)
		hijackClose(w)
	case CutResponse, StallResponse:
		rp.ServeHTTP(&partialWriter{ResponseWriter: w, left: f.After, stall: f.Kind == StallResponse, done: r.Context().Done()}, r)
	default:
		rp.ServeHTTP(w, r)
	}
}

// partialWriter relays the first left bytes of a response body, then
// aborts the response (cut) or waits until done (stall).
type partialWriter struct {
	http.ResponseWriter
	left  int
	stall bool
	done  <-chan struct{}
}

func (w *partialWriter) Write(p []byte) (int, error) {
	if len(p) <= w.left {
		w.left -= len(p)
		return w.ResponseWriter.Write(p)
	}
	if w.left > 0 {
		_, _ = w.ResponseWriter.Write(p[:w.left])
		w.left = 0
	}
	w.Flush()
	if w.stall {
		<-w.done
	}
	// Abort the response: the server closes the connection mid-body.
	panic(http.ErrAbortHandler)
}

// Flush sends what was written so far.
func (w *partialWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// hijackClose closes the client connection without writing a response.
func hijackClose(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic(http.ErrAbortHandler)
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	_ = conn.Close()
}
