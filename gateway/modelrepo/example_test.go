package modelrepo_test

import (
	"fmt"
	"path/filepath"

	"github.com/embedgate/embedgate/gateway"
	"github.com/embedgate/embedgate/gateway/modelrepo"
)

func ExampleLoad() {
	cfg, err := modelrepo.Load(filepath.Join("..", "..", "model_repository", "bge-small-en-v1.5", "config.pbtxt"))
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, in := range cfg.GetInput() {
		fmt.Println(in.GetName(), in.GetDataType(), in.GetDims())
	}
	out := cfg.GetOutput()[0]
	fmt.Println(out.GetName(), out.GetDims(), "max batch", cfg.GetMaxBatchSize())
	inputs := []string{gateway.TensorInputIDs, gateway.TensorAttentionMask, gateway.TensorTokenTypeIDs}
	fmt.Println(modelrepo.Check(cfg, inputs, []string{gateway.TensorLastHiddenState}))
	// Output:
	// input_ids TYPE_INT64 [-1]
	// attention_mask TYPE_INT64 [-1]
	// token_type_ids TYPE_INT64 [-1]
	// last_hidden_state [-1 384] max batch 32
	// <nil>
}
