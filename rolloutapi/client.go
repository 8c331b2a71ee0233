package rolloutapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// Client talks to a `sluice run` server. It implements Backend.
type Client struct {
	// BaseURL is the server's address, e.g. http://127.0.0.1:8080.
	BaseURL string
	// Token is sent as a bearer token when set.
	Token string
	// HTTP is the client to use; nil means http.DefaultClient.
	HTTP *http.Client
}

var (
	_ Backend     = (*Client)(nil)
	_ GitReporter = (*Client)(nil)
	_ Follower    = (*Client)(nil)
)

// List returns every Rollout.
func (c *Client) List(ctx context.Context) ([]Rollout, error) {
	var out []Rollout
	return out, c.do(ctx, http.MethodGet, "/api/v1/rollouts", nil, &out)
}

// Get returns one Rollout.
func (c *Client) Get(ctx context.Context, namespace, name string) (Rollout, error) {
	var out Rollout
	return out, c.do(ctx, http.MethodGet, rolloutPath(namespace, name), nil, &out)
}

// History returns the last events of a Rollout, oldest first.
func (c *Client) History(ctx context.Context, namespace, name string, limit int) ([]Event, error) {
	var out []Event
	return out, c.do(ctx, http.MethodGet, rolloutPath(namespace, name)+"/history?limit="+strconv.Itoa(limit), nil, &out)
}

// GitSources returns the server's Git sources (GitReporter).
func (c *Client) GitSources(ctx context.Context) ([]GitSource, error) {
	var out []GitSource
	return out, c.do(ctx, http.MethodGet, "/api/v1/git", nil, &out)
}

// Command sends a command and returns what the engine did with it. A
// refused command is not an error: check Refused.
func (c *Client) Command(ctx context.Context, namespace, name string, req CommandRequest) (CommandResponse, error) {
	var out CommandResponse
	return out, c.do(ctx, http.MethodPost, rolloutPath(namespace, name)+"/commands", req, &out)
}

func rolloutPath(namespace, name string) string {
	return "/api/v1/rollouts/" + url.PathEscape(namespace) + "/" + url.PathEscape(name)
}

func (c *Client) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("encode request: %w", err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(c.BaseURL, "/")+path, rd)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("%w: %s %s: %v", ErrUnavailable, method, c.BaseURL, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	if err != nil {
		return fmt.Errorf("%s %s: read response: %w", method, path, err)
	}
	// 409 carries a refused command's response, which is a result.
	if resp.StatusCode >= 300 && resp.StatusCode != http.StatusConflict {
		var eb errorBody
		msg := strings.TrimSpace(string(data))
		if json.Unmarshal(data, &eb) == nil && eb.Error != "" {
			msg = eb.Error
		}
		return statusError(resp.StatusCode, msg)
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%s %s: decode response: %w", method, path, err)
	}
	return nil
}

// statusError maps an HTTP status back to the Backend's errors, keeping the
// server's words.
func statusError(code int, msg string) error {
	var base error
	switch code {
	case http.StatusNotFound:
		base = ErrNotFound
	case http.StatusUnauthorized:
		base = ErrUnauthorized
	case http.StatusForbidden:
		base = ErrForbidden
	case http.StatusBadRequest:
		base = ErrBadRequest
	case http.StatusServiceUnavailable, http.StatusBadGateway, http.StatusGatewayTimeout:
		base = ErrUnavailable
	default:
		return fmt.Errorf("server answered %d: %s", code, msg)
	}
	msg = strings.TrimPrefix(msg, base.Error()+": ")
	return fmt.Errorf("%w: %s", base, msg)
}
