package triton

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/embedgate/embedgate/gateway"
)

// retryAfterQueueFull is what clients are told to wait when Triton's queue
// is full or too slow: its queue drains in about one batch time.
const retryAfterQueueFull = time.Second

// Triton's texts for a request its queue policy refused, both UNAVAILABLE:
// the queue is overloaded, the server is not down.
const (
	// queueFull: max_queue_size reached, at enqueue (core r25.06,
	// src/scheduler_utils.cc, PriorityQueue::PolicyQueue::Enqueue; with a
	// "[request id: …] " prefix).
	queueFull = "Exceeds maximum queue size"
	// queueTimeout: the request waited in the queue past its timeout
	// (default_timeout_microseconds, or the request's own timeout
	// parameter under allow_timeout_override) with timeout_action REJECT
	// (core r25.06, src/dynamic_batch_scheduler.cc,
	// FinishRejectedCancelledRequests; no prefix).
	queueTimeout = "Request timeout expired"
)

// classify turns the error of a Triton call into a *gateway.Error. It is the
// only place where gRPC codes become gateway kinds. ctx is the caller's
// context, so a deadline we set and one the caller set read alike.
func classify(ctx context.Context, logger *slog.Logger, batchID string, err error) error {
	if err == nil {
		return nil
	}
	var gerr *gateway.Error
	if errors.As(err, &gerr) {
		return err
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return deadlineExceeded(err)
	}
	st, ok := status.FromError(err)
	if !ok {
		if errors.Is(err, context.Canceled) {
			return &gateway.Error{Kind: gateway.Backend, Msg: "triton: call cancelled", Err: err}
		}
		return &gateway.Error{Kind: gateway.Backend, Msg: "triton: call failed", Err: err}
	}
	switch st.Code() {
	case codes.Unavailable:
		switch msg := st.Message(); {
		case strings.Contains(msg, queueFull):
			return &gateway.Error{Kind: gateway.Overloaded, Msg: "triton queue full", RetryAfter: retryAfterQueueFull, Err: err}
		case strings.Contains(msg, queueTimeout):
			// Unhealthy would turn /ready off on every replica at once
			// under load, which makes the overload worse.
			return &gateway.Error{Kind: gateway.Overloaded, Msg: "triton queue timeout", RetryAfter: retryAfterQueueFull, Err: err}
		}
		return &gateway.Error{Kind: gateway.Unhealthy, Msg: "triton unavailable", Err: err}
	case codes.NotFound:
		return &gateway.Error{Kind: gateway.Unhealthy, Msg: "triton model not available", Err: err}
	case codes.DeadlineExceeded:
		return deadlineExceeded(err)
	case codes.Canceled:
		return &gateway.Error{Kind: gateway.Backend, Msg: "triton: call cancelled", Err: err}
	case codes.InvalidArgument:
		// Triton refused what we built: the gateway and the model disagree.
		logger.Error("triton rejected a request as invalid: the gateway's request does not fit the model (a bug, or the model changed since startup)",
			"batch_id", batchID, "err", err)
		return &gateway.Error{Kind: gateway.Backend, Msg: "triton rejected the request", Err: err}
	default:
		return &gateway.Error{Kind: gateway.Backend, Msg: "triton inference failed", Err: err}
	}
}

// deadlineExceeded is the error of a call that ended with its deadline, in
// gateway.ContextError's words, as anywhere else a request stops. gRPC may
// report our deadline with any status, and Triton its own as
// DEADLINE_EXCEEDED: such an err is marked context.DeadlineExceeded first.
// err stays in the chain, and with it ErrNotCalled. A cancelled call keeps
// its Backend kind (classify): the engine runs requests' batches detached
// from their cancellation, and reads Unhealthy as a backend that is down.
func deadlineExceeded(err error) error {
	if !errors.Is(err, context.DeadlineExceeded) {
		err = fmt.Errorf("%w: %w", context.DeadlineExceeded, err)
	}
	return gateway.ContextError(err)
}

// neverSent reports whether err means the call failed before it reached
// Triton (no connection could be made), so that retrying it is safe.
// Anything Triton answered, or that may have reached it, is not retried.
func neverSent(err error) bool {
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.Unavailable {
		return false
	}
	msg := st.Message()
	return strings.HasPrefix(msg, "connection error") || strings.Contains(msg, "Error while dialing")
}

// unhealthy wraps a failed readiness check.
func unhealthy(msg string, err error) error {
	return &gateway.Error{Kind: gateway.Unhealthy, Msg: msg, Err: err}
}
