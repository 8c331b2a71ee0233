package api

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// HandlerOptions configure the HTTP handler.
type HandlerOptions struct {
	// Token, when set, is required as "Authorization: Bearer <token>" for
	// commands. Reads stay open: status is not a secret, changing traffic is.
	Token string
	// Webhook serves POST /webhook (Git push notifications), if set.
	Webhook http.Handler
	// Metrics serves GET /metrics, if set.
	Metrics http.Handler
	// Ready reports readiness for /readyz; nil means always ready.
	Ready func() error
	// CommandTimeout bounds how long a command waits for the engine.
	// Default 30s.
	CommandTimeout time.Duration
}

// maxBody bounds request bodies; commands are tiny.
const maxBody = 64 << 10

// NewHandler serves the API from b.
func NewHandler(b Backend, o HandlerOptions) http.Handler {
	if o.CommandTimeout == 0 {
		o.CommandTimeout = 30 * time.Second
	}
	h := &handler{b: b, o: o}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/rollouts", h.list)
	mux.HandleFunc("GET /api/v1/rollouts/{namespace}/{name}", h.get)
	mux.HandleFunc("GET /api/v1/rollouts/{namespace}/{name}/history", h.history)
	mux.HandleFunc("POST /api/v1/rollouts/{namespace}/{name}/commands", h.command)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", h.ready)
	if o.Webhook != nil {
		mux.Handle("POST /webhook", o.Webhook)
	}
	if o.Metrics != nil {
		mux.Handle("GET /metrics", o.Metrics)
	}
	return mux
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
	if !h.authorized(r) {
		writeError(w, ErrUnauthorized)
		return
	}
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
	if req.By == "" {
		req.By = "api@" + clientHost(r)
	}
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

func (h *handler) ready(w http.ResponseWriter, _ *http.Request) {
	if h.o.Ready != nil {
		if err := h.o.Ready(); err != nil {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "not ready", "reason": err.Error()})
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

func (h *handler) authorized(r *http.Request) bool {
	if h.o.Token == "" {
		return true
	}
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && subtle.ConstantTimeCompare([]byte(got), []byte(h.o.Token)) == 1
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
