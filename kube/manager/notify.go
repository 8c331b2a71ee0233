package manager

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/sluicehq/sluice/kube/controller"
	"github.com/sluicehq/sluice/notify"
)

// notifyFlush is how long a stopping controller keeps delivering the
// notifications it queued.
const notifyFlush = 5 * time.Second

// notifier is the notifications section's Notifier for the Rollout
// controller, nil without targets. References are read once, at start:
// environment variables, files (a mounted Secret, say), and secretKeyRef,
// a key of a Secret in the controller's namespace, read with the
// controller's own permission to get Secrets there.
//
// As `sluice run` keeps an outbox in its state file, controller mode keeps
// undelivered notifications in the Rollout's status
// (status.pendingNotifications, kube/controller/notifications.go): what
// is queued when the leader stops (past notifyFlush) or crashes is sent
// again, under the same delivery ID, by the next leader.
func (c *Controller) notifier(opts Options) (controller.Notifier, error) {
	if len(c.cfg.Notifications.Targets) == 0 {
		return nil, nil
	}
	reader := c.mgr.GetAPIReader()
	ns := c.cfg.Namespace
	targets, err := c.cfg.Notifications.ResolveWith(notify.Lookup{Secret: func(name, key string) (string, error) {
		ctx, cancel := context.WithTimeout(c.base, 30*time.Second)
		defer cancel()
		var s corev1.Secret
		if err := reader.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &s); err != nil {
			return "", fmt.Errorf("secretKeyRef: reading Secret %s/%s: %w", ns, name, err)
		}
		v, ok := s.Data[key]
		if !ok {
			return "", fmt.Errorf("secretKeyRef: Secret %s/%s has no key %q", ns, name, key)
		}
		return string(v), nil
	}})
	if err != nil {
		return nil, err
	}
	n, err := notify.New(targets, notify.Options{Registerer: opts.Registerer, Log: c.log.WithName("notify")})
	if err != nil {
		return nil, fmt.Errorf("notifications: %w", err)
	}
	if err := c.mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
		<-ctx.Done()
		flush, cancel := context.WithTimeout(context.Background(), notifyFlush)
		defer cancel()
		if err := n.Close(flush); err != nil {
			c.log.Info("stopping with notifications undelivered", "error", err.Error())
		}
		return nil
	})); err != nil {
		return nil, fmt.Errorf("add notifier: %w", err)
	}
	return n, nil
}
