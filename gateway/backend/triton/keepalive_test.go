package triton

import (
	"testing"

	"github.com/embedgate/embedgate/gateway/backend/triton/tritontest"
)

// Triton GOAWAYs a client that pings more often than every 5 minutes
// without data, or at all with no call in flight: the client's keepalive
// must stay within both, and within the stand-in's policy, which is
// Triton's.
func TestKeepalive(t *testing.T) {
	p := keepaliveParams()
	if p.Time < minPingInterval || p.Time < tritontest.MinPingInterval {
		t.Errorf("keepalive Time = %v, want >= %v (Triton's http2_min_recv_ping_interval_without_data_ms)", p.Time, tritontest.MinPingInterval)
	}
	if p.PermitWithoutStream {
		t.Error("keepalive PermitWithoutStream = true: Triton counts pings without calls as strikes")
	}
	if p.Timeout <= 0 {
		t.Errorf("keepalive Timeout = %v, want > 0", p.Timeout)
	}
}
