package driver

import (
	"context"
	"time"

	"github.com/hashicorp/nomad/plugins/device"
	"github.com/hashicorp/nomad/plugins/drivers"
	pstructs "github.com/hashicorp/nomad/plugins/shared/structs"

	"github.com/pixelstream/nomad-driver-pixelstream/driver/gpu"
)

// gpuStatsEvery bounds the nvidia-smi calls behind GPU figures: Nomad asks
// for stats every second per task, a GPU sample costs tens of milliseconds.
const gpuStatsEvery = 5 * time.Second

// withGPUStats adds the assigned GPUs' utilisation and memory to the
// executor's stats. When they cannot be read (no nvidia-smi, a hung GPU) the
// stats pass through unchanged: a stats call never fails for them.
func withGPUStats(ctx context.Context, uuids []string, in <-chan *drivers.TaskResourceUsage) <-chan *drivers.TaskResourceUsage {
	if len(uuids) == 0 {
		return in
	}
	out := make(chan *drivers.TaskResourceUsage)
	go func() {
		defer close(out)
		var last *device.DeviceGroupStats
		var sampled time.Time
		for u := range in {
			if time.Since(sampled) >= gpuStatsEvery {
				sampled = time.Now()
				sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				if st, ok := gpu.Stats(sctx, gpu.Exec, uuids); ok {
					last = deviceStats(st, sampled)
				}
				cancel()
			}
			if last != nil && u != nil && u.ResourceUsage != nil {
				u.ResourceUsage.DeviceStats = append(u.ResourceUsage.DeviceStats, last)
			}
			select {
			case out <- u:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}

// deviceStats shapes GPU samples the way Nomad's device plugins report
// them, so `nomad alloc status -stats` and the UI show them per GPU.
func deviceStats(st []gpu.GPUStats, at time.Time) *device.DeviceGroupStats {
	g := &device.DeviceGroupStats{Vendor: "nvidia", Type: "gpu", Name: "pixelstream", InstanceStats: map[string]*device.DeviceStats{}}
	for _, s := range st {
		used, total, util := s.MemoryUsedMiB, s.MemoryTotalMiB, s.UtilizationPercent
		g.InstanceStats[s.UUID] = &device.DeviceStats{
			Summary: &pstructs.StatValue{FloatNumeratorVal: &used, FloatDenominatorVal: &total, Unit: "MiB", Desc: "GPU memory used"},
			Stats: &pstructs.StatObject{Attributes: map[string]*pstructs.StatValue{
				"GPU utilization": {FloatNumeratorVal: &util, Unit: "%", Desc: "share of time a kernel ran"},
				"Memory used":     {FloatNumeratorVal: &used, FloatDenominatorVal: &total, Unit: "MiB"},
			}},
			Timestamp: at,
		}
	}
	return g
}
