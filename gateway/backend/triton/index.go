package triton

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/embedgate/embedgate/tritonstubs"
)

// IndexedModel is a model Triton serves: its name, the latest of its ready
// versions, and the string parameters of its config (config.pbtxt's
// parameters { key: ... value: { string_value: ... } }), which say how the
// gateway should serve it.
type IndexedModel struct {
	Name       string
	Version    string
	Parameters map[string]string
}

// Index lists the models Triton has ready (RepositoryIndex with ready
// set), by name, each with its config's parameters (one ModelConfig call
// per model). Each call is bounded by Timeout. A model that stops being
// ready between the two calls is left out; any other failure fails Index.
func (c *Client) Index(ctx context.Context) ([]IndexedModel, error) {
	if c.closed.Load() {
		return nil, fmt.Errorf("triton: index of %s: the client is closed", c.opts.URL)
	}
	var resp *tritonstubs.RepositoryIndexResponse
	err := c.call(ctx, func(ctx context.Context, cl tritonstubs.GRPCInferenceServiceClient) (err error) {
		resp, err = cl.RepositoryIndex(ctx, &tritonstubs.RepositoryIndexRequest{Ready: true})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("triton: repository index of %s: %w", c.opts.URL, err)
	}
	latest := map[string]string{} // one entry per ready version: keep the latest
	for _, m := range resp.GetModels() {
		if m.GetState() != "READY" || m.GetName() == "" {
			continue // ready was asked for; a server may still list others
		}
		if v, ok := latest[m.GetName()]; !ok || newerVersion(m.GetVersion(), v) {
			latest[m.GetName()] = m.GetVersion()
		}
	}
	var models []IndexedModel
	for _, name := range slices.Sorted(maps.Keys(latest)) {
		cfg, err := c.modelConfig(ctx, name, latest[name])
		if modelGone(err) {
			c.logger.Debug("triton model left between index and config", "url", c.opts.URL, "model", name, "err", err)
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("triton: model %s config at %s: %w", name, c.opts.URL, err)
		}
		params := make(map[string]string, len(cfg.GetParameters()))
		for k, p := range cfg.GetParameters() {
			params[k] = p.GetStringValue()
		}
		models = append(models, IndexedModel{Name: name, Version: latest[name], Parameters: params})
	}
	return models, nil
}

// modelGone: Triton answered that it does not serve the model (any
// more), not that the call failed on the way.
func modelGone(err error) bool {
	st, ok := status.FromError(err)
	switch {
	case !ok || err == nil:
		return false
	case st.Code() == codes.NotFound:
		return true
	default:
		return st.Code() == codes.Unavailable && strings.Contains(st.Message(), "Request for unknown model")
	}
}

// newerVersion compares Triton's version strings, which are integers.
func newerVersion(a, b string) bool {
	x, errA := strconv.ParseInt(a, 10, 64)
	y, errB := strconv.ParseInt(b, 10, 64)
	if errA != nil || errB != nil {
		return a > b
	}
	return x > y
}

// modelConfig reads the model's normalized config.
func (c *Client) modelConfig(ctx context.Context, model, version string) (*tritonstubs.ModelConfig, error) {
	var resp *tritonstubs.ModelConfigResponse
	err := c.call(ctx, func(ctx context.Context, cl tritonstubs.GRPCInferenceServiceClient) (err error) {
		resp, err = cl.ModelConfig(ctx, &tritonstubs.ModelConfigRequest{Name: model, Version: version})
		return err
	})
	if err != nil {
		return nil, err
	}
	if resp.GetConfig() == nil {
		return nil, errors.New("empty config")
	}
	return resp.GetConfig(), nil
}

// call runs one unary call bounded by Timeout, retrying it once on another
// connection if it never reached Triton.
func (c *Client) call(ctx context.Context, f func(context.Context, tritonstubs.GRPCInferenceServiceClient) error) error {
	ctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	i := c.pick()
	err := f(ctx, c.clients[i])
	if err != nil && neverSent(err) && ctx.Err() == nil {
		err = f(ctx, c.clients[(i+1)%len(c.clients)])
	}
	return err
}
