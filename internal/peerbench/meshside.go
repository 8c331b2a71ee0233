package peerbench

import (
	"context"
	"errors"
	"io"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
)

// ArgoIstiod is the peer pair as a traffic benchmark side.
type ArgoIstiod struct {
	Argo, Istiod string
	Cfg          *rest.Config
	Scheme       *runtime.Scheme
	Log          io.Writer
}

func (*ArgoIstiod) Name() string { return "argo-istiod" }
func (*ArgoIstiod) Start(context.Context, ReleasePlan) (string, string, error) {
	return "", "", errors.New("todo")
}
func (*ArgoIstiod) Node(int) GRPCNode                           { return GRPCNode{} }
func (*ArgoIstiod) Release(context.Context) (time.Time, error) { return time.Time{}, nil }
func (*ArgoIstiod) Aborted(context.Context) (bool, string, error) {
	return false, "", nil
}
func (*ArgoIstiod) Stop() {}
