package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/gofiber/fiber/v2"
	oklog "github.com/oklog/run"

	"github.com/embedgate/embedgate/gateway/auth"
	"github.com/embedgate/embedgate/gateway/config"
	"github.com/embedgate/embedgate/gateway/fleet"
	"github.com/embedgate/embedgate/gateway/server"
)

// listeners are every port the gateway serves.
type listeners struct {
	api   *trackingListener
	admin *trackingListener // /metrics and pprof; nil without --metrics-port
}

// listen binds every port before any actor starts, so that a port in use
// fails the start with nothing running; what it bound before the failure
// it closes. guard caps the connections of each.
func listen(cfg *config.Config, guard connGuard) (listeners, error) {
	api, err := net.Listen("tcp", net.JoinHostPort(cfg.Hostname, strconv.Itoa(cfg.Port)))
	if err != nil {
		return listeners{}, err
	}
	lns := listeners{api: newTrackingListener(guard.api(api))}
	if cfg.MetricsPort != 0 {
		admin, err := net.Listen("tcp", net.JoinHostPort(cfg.Hostname, strconv.Itoa(cfg.MetricsPort)))
		if err != nil {
			_ = api.Close()
			return listeners{}, err
		}
		lns.admin = newTrackingListener(guard.admin(admin))
	}
	return lns, nil
}

// runActors serves until ctx ends or an actor returns, then stops every
// actor and returns once all have. oklog/run calls the interrupts one at
// a time, in the order the actors were added (Prometheus' main relies on
// this too), and the API's returns only when its drain is over, so the
// stop goes in this order:
//
//  1. the API: /ready turns 503, requests in flight finish within
//     --shutdown-grace, then the listener and every connection close;
//  2. the reloads: SIGHUP (keys and models files) and Triton discovery,
//     so that no model is added or retired once the models stop;
//  3. the models' batch loops, which outlive 1 so that accepted requests
//     are answered;
//  4. the admin listener, which shows the drain to its end.
//
// serve's deferred Closes then release the limiter, the models and the
// Triton clients, and flush the spans. runActors owns lns and admin from
// its call.
func runActors(ctx context.Context, cfg *config.Config, logger *slog.Logger, lns listeners, srv *server.Server, admin *fiber.App,
	models *fleet.Fleet, cat *catalogue, keys *auth.Keys, reload <-chan os.Signal) error {
	var g oklog.Group
	var apiErr, adminErr error // shutdown errors: interrupts cannot return them

	// ctx ends on SIGINT or SIGTERM (see run); the other actors' contexts
	// derive from context.WithoutCancel(ctx), so each stops only in its turn.
	sigCtx, stopSig := context.WithCancel(ctx)
	g.Add(func() error { <-sigCtx.Done(); return nil }, func(error) { stopSig() })

	g.Add(func() error { return srv.Serve(lns.api) },
		func(error) { apiErr = drain(ctx, srv, lns.api, cfg.ShutdownGrace, logger) })

	reloadCtx, stopReload := context.WithCancel(context.WithoutCancel(ctx))
	g.Add(func() error { return cat.watch(reloadCtx, reload, keys) }, func(error) { stopReload() })

	modelsCtx, stopModels := context.WithCancel(context.WithoutCancel(ctx))
	g.Add(func() error { return models.Run(modelsCtx) }, func(error) { stopModels() })

	if admin != nil {
		g.Add(func() error { return admin.Listener(lns.admin) },
			func(error) { adminErr = shutdown(admin, lns.admin, time.Second) })
	}

	logger.Info("listening", "addr", lns.api.Addr().String())
	err := g.Run()
	if apiErr != nil {
		err = errors.Join(err, fmt.Errorf("drain: %w", apiErr))
	}
	if adminErr != nil {
		err = errors.Join(err, fmt.Errorf("metrics listener: %w", adminErr))
	}
	if err != nil {
		return err
	}
	logger.Info("stopped")
	return nil
}

// drain stops the API server in order: /ready answers 503 so load
// balancers move traffic away, requests in flight finish within the grace
// period, and whatever is still running when it is nearly over is
// answered 503 (server.Abort) rather than cut off; then the server shuts
// down. The last part of the grace (a fifth, at most a second) is for
// those answers to be written.
func drain(ctx context.Context, srv *server.Server, ln *trackingListener, grace time.Duration, logger *slog.Logger) error {
	logger.Info("draining", "grace", grace)
	srv.Drain()
	end := time.Now().Add(grace)
	answer := min(grace/5, time.Second)
	wctx, cancel := context.WithDeadline(context.WithoutCancel(ctx), end.Add(-answer))
	defer cancel()
	if srv.WaitIdle(wctx) != nil {
		logger.Warn("grace period nearly over: answering the requests still in flight with 503")
		srv.Abort()
		actx, cancel := context.WithDeadline(context.WithoutCancel(ctx), end)
		defer cancel()
		_ = srv.WaitIdle(actx) // past it, shutdown's own timeout ends what is left
	}
	return shutdown(srv.App(), ln, max(time.Until(end), time.Second))
}
