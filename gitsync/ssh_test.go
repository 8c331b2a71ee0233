package gitsync

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/go-logr/logr/funcr"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/sluicehq/sluice/internal/gittest"
)

// sshServer serves git-upload-pack and git-receive-pack for the
// repositories under root over SSH, as a Git host does.
type sshServer struct {
	addr    string
	hostKey ssh.PublicKey
}

func testSSHKey(t testing.TB) []byte {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(block)
}

func startSSHServer(t *testing.T, root string, clientKey []byte) *sshServer {
	t.Helper()
	client, err := ssh.ParsePrivateKey(clientKey)
	if err != nil {
		t.Fatal(err)
	}
	host, err := ssh.ParsePrivateKey(testSSHKey(t))
	if err != nil {
		t.Fatal(err)
	}
	cfg := &ssh.ServerConfig{
		PublicKeyCallback: func(_ ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			if string(key.Marshal()) != string(client.PublicKey().Marshal()) {
				return nil, errors.New("unknown key")
			}
			return nil, nil
		},
	}
	cfg.AddHostKey(host)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		l.Close()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				serveSSHConn(conn, cfg, root)
			}()
		}
	}()
	return &sshServer{addr: l.Addr().String(), hostKey: host.PublicKey()}
}

func serveSSHConn(conn net.Conn, cfg *ssh.ServerConfig, root string) {
	defer conn.Close()
	_, chans, reqs, err := ssh.NewServerConn(conn, cfg)
	if err != nil {
		return
	}
	go ssh.DiscardRequests(reqs)
	for nc := range chans {
		if nc.ChannelType() != "session" {
			_ = nc.Reject(ssh.UnknownChannelType, "session only")
			continue
		}
		ch, requests, err := nc.Accept()
		if err != nil {
			return
		}
		for req := range requests {
			if req.Type != "exec" {
				_ = req.Reply(req.Type == "env", nil)
				continue
			}
			var payload struct{ Command string }
			if ssh.Unmarshal(req.Payload, &payload) != nil {
				_ = req.Reply(false, nil)
				continue
			}
			_ = req.Reply(true, nil)
			// "git-upload-pack '/repo.git'"
			name, arg, _ := strings.Cut(payload.Command, " ")
			if name != "git-upload-pack" && name != "git-receive-pack" {
				ch.Close()
				break
			}
			cmd := exec.Command(name, filepath.Join(root, strings.Trim(arg, "'")))
			cmd.Env = gittest.Env
			cmd.Stdin, cmd.Stdout, cmd.Stderr = ch, ch, ch.Stderr()
			status := uint32(0)
			if err := cmd.Run(); err != nil {
				status = 1
			}
			_, _ = ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{status}))
			_ = ch.CloseWrite()
			ch.Close()
			break
		}
	}
}

func TestSSHHostKeyVerification(t *testing.T) {
	t.Parallel()
	r := newRemote(t)
	sha := r.Push("c", map[string]string{"a.yaml": rollout("a", "v1")})
	clientKey := testSSHKey(t)
	srv := startSSHServer(t, r.Root, clientKey)
	url := "ssh://git@" + srv.addr + "/repo.git"
	line := func(key ssh.PublicKey) []byte {
		return []byte(knownhosts.Line([]string{knownhosts.Normalize(srv.addr)}, key) + "\n")
	}
	other, _ := ssh.ParsePrivateKey(testSSHKey(t))

	tests := []struct {
		name     string
		auth     Auth
		kind     ErrorKind
		insecure bool
	}{
		{"known host key", Auth{SSHKey: clientKey, KnownHosts: line(srv.hostKey)}, "", false},
		{"different host key", Auth{SSHKey: clientKey, KnownHosts: line(other.PublicKey())}, KindAuth, false},
		{"client key not accepted", Auth{SSHKey: testSSHKey(t), KnownHosts: line(srv.hostKey)}, KindAuth, false},
		{"insecure, explicitly", Auth{SSHKey: clientKey, InsecureIgnoreHostKey: true}, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var mu sync.Mutex
			var logs strings.Builder
			logger := funcr.New(func(prefix, args string) {
				mu.Lock()
				defer mu.Unlock()
				logs.WriteString(prefix + " " + args + "\n")
			}, funcr.Options{})
			s, reg := newTestSyncer(t, Source{URL: url, Branch: "main", Auth: tt.auth}, func(o *Options) { o.Logger = logger })
			st := s.Sync(context.Background())
			if KindOf(st.Err) != tt.kind {
				t.Fatalf("err %v (kind %q), want kind %q", st.Err, KindOf(st.Err), tt.kind)
			}
			if tt.kind == "" && appliedSHA(st) != sha {
				t.Errorf("applied %s, want %s", appliedSHA(st), sha)
			}
			mu.Lock()
			loud := strings.Count(logs.String(), "INSECURE")
			mu.Unlock()
			if tt.insecure != (loud >= 2) { // once at start, once per connection
				t.Errorf("INSECURE logged %d times; insecure=%v\n%s", loud, tt.insecure, logs.String())
			}
			want := 0.0
			if tt.insecure {
				want = 1
			}
			if v := metricValue(t, reg, "sluice_gitsync_insecure"); v != want {
				t.Errorf("insecure gauge = %v, want %v", v, want)
			}
		})
	}
}
