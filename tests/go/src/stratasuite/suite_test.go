// Package stratasuite runs containerd 1.6's own snapshotter conformance suite
// (snapshots/testsuite) against a Strata plugin binary, through containerd's
// proxy snapshotter client and containerd's own mount code. Each subtest gets a
// fresh plugin process on the suite's temp root.
//
// Built and run by tests/tests/containerd_suite.rs with Debian's packaged Go
// sources (GOPATH mode, offline); STRATA_PLUGIN names the plugin binary and
// STRATA_PLUGIN_OPTS its extra arguments (space-separated).
package stratasuite

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/containerd/containerd/snapshots"
	"github.com/containerd/containerd/snapshots/proxy"
	"github.com/containerd/containerd/snapshots/testsuite"
	"google.golang.org/grpc"
)

var counter int64

func startPlugin(ctx context.Context, root string) (snapshots.Snapshotter, func() error, error) {
	bin := os.Getenv("STRATA_PLUGIN")
	if bin == "" {
		return nil, nil, fmt.Errorf("STRATA_PLUGIN is not set")
	}
	dir := "/run/strata-gosuite"
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, err
	}
	sock := filepath.Join(dir, fmt.Sprintf("%d-%d.sock", os.Getpid(), atomic.AddInt64(&counter, 1)))
	args := []string{"--root", root, "--address", sock, "--log-level", "warn"}
	if extra := os.Getenv("STRATA_PLUGIN_OPTS"); extra != "" {
		args = append(args, strings.Fields(extra)...)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout = os.Stderr
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, nil, err
	}
	stop := func() error {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			return err
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			return fmt.Errorf("plugin did not stop on SIGTERM")
		}
	}
	dctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	for {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		select {
		case <-dctx.Done():
			_ = stop()
			return nil, nil, fmt.Errorf("plugin socket %s did not appear", sock)
		case <-time.After(5 * time.Millisecond):
		}
	}
	conn, err := grpc.DialContext(dctx, "passthrough:///strata",
		grpc.WithInsecure(),
		grpc.WithBlock(),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		}),
	)
	if err != nil {
		_ = stop()
		return nil, nil, err
	}
	sn := proxy.NewSnapshotter(snapshotsapi.NewSnapshotsClient(conn), "strata")
	cleanup := func() error {
		_ = conn.Close()
		err := stop()
		unmountUnder(root)
		return err
	}
	return sn, cleanup, nil
}

// unmountUnder detaches every mount below root that the plugin left after it stopped (the
// aufs plugin keeps its unions mounted across a stop, so containers keep their root
// filesystems); the suite then removes root.
func unmountUnder(root string) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return
	}
	prefix := filepath.Clean(root) + "/"
	for _, line := range strings.Split(string(data), "\n") {
		fields := strings.Fields(line)
		if len(fields) > 4 && strings.HasPrefix(fields[4], prefix) {
			_ = syscall.Unmount(fields[4], syscall.MNT_DETACH)
		}
	}
}

func TestContainerdSnapshotterSuite(t *testing.T) {
	testsuite.SnapshotterSuite(t, "strata", startPlugin)
}
