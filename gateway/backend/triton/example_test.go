package triton_test

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/embedgate/embedgate/gateway"
	"github.com/embedgate/embedgate/gateway/backend/triton"
	"github.com/embedgate/embedgate/gateway/backend/triton/tritontest"
)

// meanOfIDs stands in for a model: its pooled "embedding" of a row is the
// sum of the row's ids and its token count.
type meanOfIDs struct{}

func (meanOfIDs) Spec() gateway.ModelSpec {
	return gateway.ModelSpec{Output: gateway.Pooled, Hidden: 2}
}

func (meanOfIDs) Embed(_ context.Context, b *gateway.Batch) (*gateway.Output, error) {
	out := &gateway.Output{Kind: gateway.Pooled, Rows: b.Rows, Hidden: 2, Data: make([]float32, 2*b.Rows)}
	for i, id := range b.InputIDs {
		out.Data[2*(i/b.Len)] += float32(id * b.AttentionMask[i])
		out.Data[2*(i/b.Len)+1] += float32(b.AttentionMask[i])
	}
	return out, nil
}

func (meanOfIDs) Health(context.Context) error { return nil }

func Example() {
	// A stand-in Triton on loopback; in production, URL is Triton's gRPC port.
	srv, err := tritontest.New(meanOfIDs{}, tritontest.WithName("bge-small"), tritontest.WithInt32Inputs())
	if err != nil {
		fmt.Println(err)
		return
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println(err)
		return
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(lis) }()
	defer func() { srv.Close(); <-done }()

	b, err := triton.Open(context.Background(), triton.Options{URL: lis.Addr().String(), Model: "bge-small", ReadyTimeout: 5 * time.Second})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer b.Close()
	s := b.Spec()
	fmt.Printf("hidden %d, pooled %v, int32 %v, max batch %d\n", s.Hidden, s.Output == gateway.Pooled, s.InputDType == gateway.Int32, s.MaxBatch)

	out, err := b.Embed(context.Background(), &gateway.Batch{ID: "req-1", Rows: 2, Len: 3,
		InputIDs: []int64{101, 7, 102, 101, 102, 0}, AttentionMask: []int64{1, 1, 1, 1, 1, 0}})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(out.Data)
	out.Free() // Data goes back to the backend's pool: done with it
	// Output:
	// hidden 2, pooled true, int32 true, max batch 32
	// [210 3 203 2]
}

func ExampleClient() {
	// A stand-in Triton serving two models, one of them not loaded yet.
	srv, err := tritontest.NewMulti(
		tritontest.WithModel("bge-small", meanOfIDs{}, tritontest.ModelParameters(map[string]string{"hf_model_id": "BAAI/bge-small-en-v1.5"})),
		tritontest.WithModel("e5-small", meanOfIDs{}, tritontest.ModelUnloaded()))
	if err != nil {
		fmt.Println(err)
		return
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println(err)
		return
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(lis) }()
	defer func() { srv.Close(); <-done }()

	// One client per Triton address; every model opened on it shares its
	// connections and MaxInflight.
	ctx := context.Background()
	c, err := triton.Dial(ctx, triton.ClientOptions{URL: lis.Addr().String(), MaxInflight: 8, ReadyTimeout: 5 * time.Second})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	list := func() {
		models, err := c.Index(ctx)
		if err != nil {
			fmt.Println(err)
			return
		}
		for _, m := range models {
			fmt.Println(m.Name, m.Version, m.Parameters)
		}
	}
	list()
	if err := srv.Load("e5-small"); err != nil { // as Triton's repository API would
		fmt.Println(err)
		return
	}
	list()
	b, err := c.Open(ctx, "e5-small", "")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer b.Close() // the backend only; c stays open
	fmt.Println(b.Spec().Name, b.Spec().Hidden)
	// Output:
	// bge-small 1 map[hf_model_id:BAAI/bge-small-en-v1.5]
	// bge-small 1 map[hf_model_id:BAAI/bge-small-en-v1.5]
	// e5-small 1 map[]
	// e5-small 2
}
