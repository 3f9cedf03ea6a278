package driver

import (
	"testing"
	"time"

	"github.com/hashicorp/nomad/plugins/drivers"

	"github.com/pixelstream/nomad-driver-pixelstream/driver/gpu"
)

func TestDeviceStats(t *testing.T) {
	cases := []struct {
		name string
		in   []gpu.GPUStats
		want map[string][3]float64 // uuid -> used, total, utilisation
	}{
		{"none", nil, map[string][3]float64{}},
		{"two GPUs", []gpu.GPUStats{
			{UUID: "GPU-a", UtilizationPercent: 37, MemoryUsedMiB: 1024, MemoryTotalMiB: 81559},
			{UUID: "GPU-b", UtilizationPercent: 0, MemoryUsedMiB: 0, MemoryTotalMiB: 24576},
		}, map[string][3]float64{"GPU-a": {1024, 81559, 37}, "GPU-b": {0, 24576, 0}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := deviceStats(c.in, time.Unix(1, 0))
			if g.Vendor != "nvidia" || g.Type != "gpu" || len(g.InstanceStats) != len(c.want) {
				t.Fatalf("group %+v", g)
			}
			for uuid, w := range c.want {
				s := g.InstanceStats[uuid]
				if s == nil {
					t.Fatalf("no stats for %s", uuid)
				}
				if *s.Summary.FloatNumeratorVal != w[0] || *s.Summary.FloatDenominatorVal != w[1] {
					t.Errorf("%s summary %v/%v, want %v/%v", uuid, *s.Summary.FloatNumeratorVal, *s.Summary.FloatDenominatorVal, w[0], w[1])
				}
				if u := *s.Stats.Attributes["GPU utilization"].FloatNumeratorVal; u != w[2] {
					t.Errorf("%s utilisation %v, want %v", uuid, u, w[2])
				}
			}
		})
	}
}

func TestGPUStatsPassThroughWithoutGPUs(t *testing.T) {
	in := make(chan *drivers.TaskResourceUsage)
	if out := withGPUStats(t.Context(), nil, in); out != (<-chan *drivers.TaskResourceUsage)(in) {
		t.Fatal("without GPUs the executor's stats must pass through untouched")
	}
}
