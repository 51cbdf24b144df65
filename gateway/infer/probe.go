package infer

import (
	"context"
	"time"

	"github.com/embedgate/embedgate/gateway"
	"github.com/embedgate/embedgate/gateway/tokenizer"
)

// probe checks the backend every ProbeInterval until ctx is done. Once a
// batch has failed for lack of a backend, only a successful probe batch
// marks the engine ready again: a health RPC can answer while inference
// still stalls, and without readiness no traffic comes to prove otherwise.
func (e *Engine) probe(ctx context.Context) {
	t := time.NewTicker(e.opts.ProbeInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pctx, cancel := context.WithTimeout(ctx, 2*e.opts.ProbeInterval)
		err := e.backend.Health(pctx)
		switch {
		case err != nil:
			if e.healthy.Swap(false) && ctx.Err() == nil {
				e.logger.Warn("backend not ready", "err", err)
			}
		case !e.healthy.Load():
			if err := e.probeBatch(pctx); err == nil {
				e.healthy.Store(true)
				e.logger.Info("backend ready again")
			}
		}
		cancel()
	}
}

func (e *Engine) probeBatch(ctx context.Context) error {
	return e.sampleBatch(ctx, 1, 0)
}

// calibrate measures the backend before the batch loop starts, so that the
// backlog knows its rate from the first request on: without it, the first
// burst after a start is admitted by a fixed guess (measured with
// embedbench: at 64 clients a cold gateway refused work it had time for).
// The first batch warms the backend up (ONNX Runtime sizes its arena then)
// and is not counted. A backend that fails here is left to the probe.
//
// The sample is of inputs of the model's max length, the slowest per token
// (attention grows with the square of the length): the rate it gives is
// what a queue of long inputs would see. Measured on inputs of 128 tokens,
// it read 2.5× the rate that the first burst of a mix whose tokens are
// mostly passages and documents then got (embedbench at 64 clients through
// the Triton stand-in, the length and the load's contention together), and
// the requests admitted at the cap of their wait ended 504.
func (e *Engine) calibrate(ctx context.Context) {
	length := e.opts.MaxInputLength
	rows := max(1, min(e.opts.MaxBatchRequests, min(2048, e.opts.MaxBatchTokens)/length))
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := e.sampleBatch(ctx, rows, length); err != nil {
		e.logger.Warn("backend calibration failed; admission guesses until the first batch", "err", err)
		return
	}
	done := e.backlog.Start(rows * length)
	err := e.sampleBatch(ctx, rows, length)
	done(err == nil)
	if err == nil {
		e.logger.Info("backend calibrated", "rows", rows, "len", length, "tokens_per_second", int(e.backlog.Rate()))
	}
}

// sampleBatch runs rows copies of a short text, cut or repeated to length
// tokens (0 = as it is).
func (e *Engine) sampleBatch(ctx context.Context, rows, length int) error {
	ids := e.tok.Encode("ready to embed text quickly and exactly", tokenizer.EncodeOptions{AddSpecialTokens: true}).IDs
	if length > 0 && len(ids) > 0 {
		for len(ids) < length {
			ids = append(ids, ids[len(ids)/2])
		}
		ids = ids[:length]
	}
	b := &gateway.Batch{ID: "probe", Rows: rows, Len: len(ids)}
	for range rows {
		for _, id := range ids {
			b.InputIDs = append(b.InputIDs, int64(id))
			b.AttentionMask = append(b.AttentionMask, 1)
			b.TokenTypeIDs = append(b.TokenTypeIDs, 0)
		}
	}
	out, err := e.backend.Embed(ctx, b)
	defer out.Free()
	if err == nil {
		err = checkOutput(out, b, e.spec)
	}
	return err
}
