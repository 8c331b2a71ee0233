package clusterapi

import (
	"sync"

	toolscache "k8s.io/client-go/tools/cache"
)

// Changes turns an informer's events into rolloutapi.Watcher's signal: in
// the controller, every change of a Rollout or an AnalysisRun in its cache
// wakes the dashboard's live pages at once (AccessOptions.Changed).
type Changes struct {
	mu sync.Mutex
	ch chan struct{}
}

// NewChanges returns a Changes with nothing signalled.
func NewChanges() *Changes { return &Changes{ch: make(chan struct{})} }

// Changed returns a channel that is closed at the next Signal.
func (c *Changes) Changed() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ch
}

// Signal closes the channel Changed returned.
func (c *Changes) Signal() {
	c.mu.Lock()
	defer c.mu.Unlock()
	close(c.ch)
	c.ch = make(chan struct{})
}

// Handler signals at every add, update and delete of an informer.
func (c *Changes) Handler() toolscache.ResourceEventHandler {
	return toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { c.Signal() },
		UpdateFunc: func(any, any) { c.Signal() },
		DeleteFunc: func(any) { c.Signal() },
	}
}
