package gpu

import (
	"context"
	"reflect"
	"testing"
	"time"
)

func TestStats(t *testing.T) {
	uuid := "GPU-cccccccc-1111-2222-3333-0000000000b1"
	statsArgs := "--query-gpu=uuid,utilization.gpu,memory.used,memory.total --format=csv,noheader,nounits -i " + uuid
	h100 := "GPU-96824448-f1ee-fe67-1b1f-fa35361b9605"
	text := func(s string) RunFunc {
		return func(ctx context.Context, name string, args ...string) ([]byte, error) { return []byte(s), nil }
	}
	tests := []struct {
		name   string
		run    RunFunc
		uuids  []string
		want   []GPUStats
		wantOK bool
	}{
		{"recorded output", fakeSMI(t, "four", map[string]string{statsArgs: "smi-stats.csv"}), []string{uuid},
			[]GPUStats{{UUID: uuid, UtilizationPercent: 87, MemoryUsedMiB: 20312, MemoryTotalMiB: 46068}}, true},
		{"real H100 figures", text(h100 + ", 0, 0, 81559\n"), []string{h100},
			[]GPUStats{{UUID: h100, MemoryTotalMiB: 81559}}, true},
		{"no GPUs assigned", text("unused"), nil, nil, false},
		{"no runner", nil, []string{uuid}, nil, false},
		{"nvidia-smi missing", missingSMI, []string{uuid}, nil, false},
		{"nvidia-smi failing", failingSMI, []string{uuid}, nil, false},
		{"N/A values", text(uuid + ", [N/A], 10, 100\n"), []string{uuid}, nil, false},
		{"wrong field count", text(uuid + ", 5\n"), []string{uuid}, nil, false},
		{"empty output", text(""), []string{uuid}, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := Stats(context.Background(), tt.run, tt.uuids)
			if ok != tt.wantOK || !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Stats = %+v, %v; want %+v, %v", got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

// A hung nvidia-smi must not hang the stats call: the runner sees a context
// with a deadline and Stats gives up when it expires.
func TestStatsHungSMI(t *testing.T) {
	var deadline time.Time
	var hasDeadline bool
	hung := func(ctx context.Context, name string, args ...string) ([]byte, error) {
		deadline, hasDeadline = ctx.Deadline()
		<-ctx.Done()
		return nil, ctx.Err()
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // the caller's own context is already done
	if _, ok := Stats(ctx, hung, []string{"GPU-x"}); ok {
		t.Fatal("Stats reported ok from a hung nvidia-smi")
	}
	if !hasDeadline || time.Until(deadline) > smiTimeout {
		t.Errorf("runner context deadline = %v (set %v), want one within %v", deadline, hasDeadline, smiTimeout)
	}
}
