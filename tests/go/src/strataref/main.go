// strataref serves one of containerd 1.6's own snapshotters (overlayfs or native) over the
// containerd snapshots gRPC API on a unix socket. It is the reference the strata-tests
// conformance suite is checked against (tests/tests/containerd_reference.rs), so the suite is
// known to expect what containerd does.
//
//	strataref -kind overlayfs|native -root DIR -socket SOCKET
//
// SIGTERM or SIGINT stops it: in-flight calls get five seconds, then the server is closed.
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/containerd/containerd/contrib/snapshotservice"
	"github.com/containerd/containerd/snapshots"
	"github.com/containerd/containerd/snapshots/native"
	"github.com/containerd/containerd/snapshots/overlay"
	"google.golang.org/grpc"
)

func main() {
	kind := flag.String("kind", "overlayfs", "which containerd snapshotter: overlayfs or native")
	root := flag.String("root", "", "the snapshotter's root directory")
	socket := flag.String("socket", "", "the unix socket to serve on")
	flag.Parse()
	if err := serve(*kind, *root, *socket); err != nil {
		fmt.Fprintf(os.Stderr, "strataref: %v\n", err)
		os.Exit(1)
	}
}

func newSnapshotter(kind, root string) (snapshots.Snapshotter, error) {
	switch kind {
	case "overlayfs":
		return overlay.NewSnapshotter(root)
	case "native":
		return native.NewSnapshotter(root)
	}
	return nil, fmt.Errorf("unknown -kind %q (want overlayfs or native)", kind)
}

func serve(kind, root, socket string) error {
	if root == "" || socket == "" {
		return fmt.Errorf("-root and -socket are required")
	}
	sn, err := newSnapshotter(kind, root)
	if err != nil {
		return fmt.Errorf("open the %s snapshotter at %s: %w", kind, root, err)
	}
	defer sn.Close()

	listener, err := net.Listen("unix", socket)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", socket, err)
	}
	defer os.Remove(socket)

	server := grpc.NewServer()
	snapshotsapi.RegisterSnapshotsServer(server, snapshotservice.FromSnapshotter(sn))

	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-signals
		stopped := make(chan struct{})
		go func() {
			server.GracefulStop()
			close(stopped)
		}()
		select {
		case <-stopped:
		case <-time.After(5 * time.Second):
			server.Stop()
		}
	}()

	fmt.Fprintf(os.Stderr, "strataref: serving containerd's %s snapshotter (root %s) on %s\n", kind, root, socket)
	if err := server.Serve(listener); err != nil && err != grpc.ErrServerStopped {
		return err
	}
	return nil
}
