package clusterapi

import (
	"sync"
	"time"
)

// memo keeps answers for a short while, so that many live pages looking
// at one thing cost the API server one request.
type memo[T any] struct {
	ttl time.Duration
	now func() time.Time
	mu  sync.Mutex
	m   map[string]memoEntry[T]
}

type memoEntry[T any] struct {
	v  T
	at time.Time
}

// maxMemo bounds the answers kept.
const maxMemo = 1024

func newMemo[T any](ttl time.Duration, now func() time.Time) *memo[T] {
	return &memo[T]{ttl: ttl, now: now, m: map[string]memoEntry[T]{}}
}

// get returns the answer for key, from fetch unless one younger than the
// ttl is kept. Errors are not kept.
func (m *memo[T]) get(key string, fetch func() (T, error)) (T, error) {
	now := m.now()
	m.mu.Lock()
	e, ok := m.m[key]
	m.mu.Unlock()
	if ok && now.Sub(e.at) < m.ttl {
		return e.v, nil
	}
	v, err := fetch()
	if err != nil {
		return v, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.m) >= maxMemo {
		for k, old := range m.m {
			if now.Sub(old.at) >= m.ttl {
				delete(m.m, k)
			}
		}
		if len(m.m) >= maxMemo {
			clear(m.m)
		}
	}
	m.m[key] = memoEntry[T]{v: v, at: now}
	return v, nil
}
