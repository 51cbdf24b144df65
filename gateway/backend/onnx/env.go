//go:build cgo

package onnx

import (
	"fmt"
	"sync"

	ort "github.com/yalue/onnxruntime_go"
)

// ortEnv reference-counts ONNX Runtime's environment, the package's only
// global. The environment is process-wide twice over: onnxruntime_go keeps a
// single OrtEnv in package state (a second InitializeEnvironment fails), and
// DestroyEnvironment also dlcloses the library, so destroying it while
// another Backend's session is alive would crash that session. Counting the
// open Backends lets several coexist (tests open many) and the last Close
// release everything.
var ortEnv struct {
	mu   sync.Mutex
	refs int
	lib  string
}

// acquireEnv initialises the environment on first use with library lib. Later
// callers must name the same library: it cannot be swapped once loaded.
func acquireEnv(lib string) error {
	ortEnv.mu.Lock()
	defer ortEnv.mu.Unlock()
	if ortEnv.refs > 0 {
		if lib != ortEnv.lib {
			return fmt.Errorf("onnx: runtime already loaded from %s, cannot also load %s", ortEnv.lib, lib)
		}
		ortEnv.refs++
		return nil
	}
	ort.SetSharedLibraryPath(lib)
	if err := ort.InitializeEnvironment(ort.WithLogLevelWarning()); err != nil {
		return fmt.Errorf("%w %s: %w", ErrLoadRuntime, lib, err)
	}
	ortEnv.refs, ortEnv.lib = 1, lib
	return nil
}

// releaseEnv drops one reference; the last one destroys the environment.
func releaseEnv() error {
	ortEnv.mu.Lock()
	defer ortEnv.mu.Unlock()
	if ortEnv.refs == 0 {
		return nil
	}
	ortEnv.refs--
	if ortEnv.refs > 0 {
		return nil
	}
	ortEnv.lib = ""
	if err := ort.DestroyEnvironment(); err != nil {
		return fmt.Errorf("onnx: destroy runtime environment: %w", err)
	}
	return nil
}
