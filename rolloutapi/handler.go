package rolloutapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// HandlerOptions configure the API handler.
type HandlerOptions struct {
	// Tokens may call the API. With none, every API request is refused
	// (401) unless InsecureNoAuth is set: the API fails closed.
	Tokens []Token
	// InsecureNoAuth serves everyone as an operator named after the
	// client's address. For a laptop, never for a shared network.
	InsecureNoAuth bool
	// Ready reports readiness for /readyz; nil means always ready.
	Ready func() error
	// CommandTimeout bounds how long a command waits for the engine.
	// Default 30s.
	CommandTimeout time.Duration
}

// maxBody bounds request bodies; commands are tiny.
const maxBody = 64 << 10

// NewHandler serves the API from b: reads for any token, commands for
// operate tokens, with the command's actor taken from the token. /healthz
// and /readyz answer without a token (they say nothing but up and ready).
// The Git webhook and metrics have listeners of their own (NewOpsHandler,
// gitsync's webhook), so exposing one never exposes the commands.
func NewHandler(b Backend, o HandlerOptions) http.Handler {
	if o.CommandTimeout == 0 {
		o.CommandTimeout = 30 * time.Second
	}
	h := &handler{b: b, o: o}
	g := guard{tokens: o.Tokens, insecure: o.InsecureNoAuth}
	mux := http.NewServeMux()
	mux.Handle("GET /api/v1/rollouts", g.require(RoleRead, h.list))
	mux.Handle("GET /api/v1/rollouts/{namespace}/{name}", g.require(RoleRead, h.get))
	mux.Handle("GET /api/v1/rollouts/{namespace}/{name}/history", g.require(RoleRead, h.history))
	mux.Handle("POST /api/v1/rollouts/{namespace}/{name}/commands", g.require(RoleOperate, h.command))
	mux.Handle("GET /api/v1/git", g.require(RoleRead, h.git))
	mux.Handle("GET /api/v1/watch", g.require(RoleRead, h.watch))
	health(mux, o.Ready)
	return mux
}

// OpsOptions configure the operations handler.
type OpsOptions struct {
	// Tokens and InsecureNoAuth as for the API: /metrics needs a token of
	// any role.
	Tokens         []Token
	InsecureNoAuth bool
	// Metrics serves GET /metrics.
	Metrics http.Handler
	// Ready reports readiness for /readyz; nil means always ready.
	Ready func() error
}

// NewOpsHandler serves /metrics (with a token) and /healthz and /readyz
// (without one) on a listener of their own.
func NewOpsHandler(o OpsOptions) http.Handler {
	g := guard{tokens: o.Tokens, insecure: o.InsecureNoAuth}
	mux := http.NewServeMux()
	if o.Metrics != nil {
		mux.Handle("GET /metrics", g.require(RoleRead, o.Metrics.ServeHTTP))
	}
	health(mux, o.Ready)
	return mux
}

func health(mux *http.ServeMux, ready func() error) {
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if ready != nil {
			if err := ready(); err != nil {
				writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "not ready", "reason": err.Error()})
				return
			}
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	})
}

// guard authenticates requests and checks their role.
type guard struct {
	tokens   []Token
	insecure bool
}

type identityKey struct{}

func (g guard) require(need Role, next http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, ok := authenticate(g.tokens, r)
		switch {
		case !ok && g.insecure:
			id = Anonymous(r)
		case !ok:
			w.Header().Set("WWW-Authenticate", `Bearer realm="sluice"`)
			writeError(w, ErrUnauthorized)
			return
		case !id.May(need):
			writeError(w, fmt.Errorf("%w: token %q has role %s; this needs %s", ErrForbidden, id.Name, id.Role, need))
			return
		}
		next(w, r.WithContext(context.WithValue(r.Context(), identityKey{}, id)))
	})
}

// identityOf is who the guard let in.
func identityOf(ctx context.Context) Identity {
	id, _ := ctx.Value(identityKey{}).(Identity)
	return id
}

type handler struct {
	b Backend
	o HandlerOptions
}

func (h *handler) list(w http.ResponseWriter, r *http.Request) {
	rs, err := h.b.List(r.Context())
	if err != nil {
		writeError(w, err)
		return
	}
	if rs == nil {
		rs = []Rollout{}
	}
	writeJSON(w, http.StatusOK, rs)
}

func (h *handler) get(w http.ResponseWriter, r *http.Request) {
	ro, err := h.b.Get(r.Context(), r.PathValue("namespace"), r.PathValue("name"))
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, ro)
}

func (h *handler) git(w http.ResponseWriter, r *http.Request) {
	gr, ok := h.b.(GitReporter)
	if !ok {
		writeError(w, fmt.Errorf("%w: this server does not report its Git sources", ErrNotFound))
		return
	}
	srcs, err := gr.GitSources(r.Context())
	if err != nil {
		writeError(w, err)
		return
	}
	if srcs == nil {
		srcs = []GitSource{}
	}
	writeJSON(w, http.StatusOK, srcs)
}

func (h *handler) history(w http.ResponseWriter, r *http.Request) {
	limit := 50
	if s := r.URL.Query().Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 1000 {
			writeError(w, fmt.Errorf("%w: limit must be 1..1000", ErrBadRequest))
			return
		}
		limit = n
	}
	evs, err := h.b.History(r.Context(), r.PathValue("namespace"), r.PathValue("name"), limit)
	if err != nil {
		writeError(w, err)
		return
	}
	if evs == nil {
		evs = []Event{}
	}
	writeJSON(w, http.StatusOK, evs)
}

func (h *handler) command(w http.ResponseWriter, r *http.Request) {
	var req CommandRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeError(w, fmt.Errorf("%w: command body: %v", ErrBadRequest, err))
		return
	}
	if err := ValidCommand(req.Kind); err != nil {
		writeError(w, err)
		return
	}
	// The actor is who authenticated, whatever the body says.
	req.By = identityOf(r.Context()).Name
	ctx, cancel := context.WithTimeout(r.Context(), h.o.CommandTimeout)
	defer cancel()
	resp, err := h.b.Command(ctx, r.PathValue("namespace"), r.PathValue("name"), req)
	if err != nil {
		writeError(w, err)
		return
	}
	status := http.StatusOK
	if resp.Refused {
		status = http.StatusConflict
	}
	writeJSON(w, status, resp)
}

// Anonymous is who an unauthenticated request is with InsecureNoAuth: an
// operator named after the client's address.
func Anonymous(r *http.Request) Identity {
	return Identity{Name: "anonymous@" + clientHost(r), Role: RoleOperate}
}

func clientHost(r *http.Request) string {
	host := r.RemoteAddr
	if i := strings.LastIndexByte(host, ':'); i > 0 {
		host = host[:i]
	}
	return host
}

type errorBody struct {
	Error string `json:"error"`
}

func writeError(w http.ResponseWriter, err error) {
	status := http.StatusInternalServerError
	switch {
	case errors.Is(err, ErrNotFound):
		status = http.StatusNotFound
	case errors.Is(err, ErrUnauthorized):
		status = http.StatusUnauthorized
	case errors.Is(err, ErrForbidden):
		status = http.StatusForbidden
	case errors.Is(err, ErrBadRequest):
		status = http.StatusBadRequest
	case errors.Is(err, ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		status = http.StatusServiceUnavailable
	}
	writeJSON(w, status, errorBody{Error: err.Error()})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	// The status line is out; an encoding error can only be logged by the
	// server, which sees the broken connection anyway.
	_ = enc.Encode(v)
}
