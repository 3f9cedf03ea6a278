package gpu

import (
	"context"
	"encoding/csv"
	"strconv"
	"strings"
)

// GPUStats is one GPU's utilisation and memory, as nvidia-smi reports them.
type GPUStats struct {
	UUID string
	// UtilizationPercent is the share of the last sample period in which a
	// kernel ran on the GPU (NVML's utilization.gpu).
	UtilizationPercent float64
	MemoryUsedMiB      float64
	MemoryTotalMiB     float64
}

// Stats samples the given GPUs with one short nvidia-smi call. ok is false,
// and the caller should simply leave GPU figures out, when there is nothing
// to sample, nvidia-smi is missing, slow (5 s) or fails, or its output
// cannot be read. Stats never returns an error: a stats call must not fail
// because of the GPU.
func Stats(ctx context.Context, run RunFunc, uuids []string) ([]GPUStats, bool) {
	if run == nil || len(uuids) == 0 {
		return nil, false
	}
	out, err := runSMI(ctx, run,
		"--query-gpu=uuid,utilization.gpu,memory.used,memory.total",
		"--format=csv,noheader,nounits", "-i", strings.Join(uuids, ","))
	if err != nil {
		return nil, false
	}
	r := csv.NewReader(strings.NewReader(string(out)))
	r.TrimLeadingSpace = true
	recs, err := r.ReadAll()
	if err != nil || len(recs) == 0 {
		return nil, false
	}
	var res []GPUStats
	for _, rec := range recs {
		if len(rec) != 4 {
			return nil, false
		}
		s := GPUStats{UUID: strings.TrimSpace(rec[0])}
		var ok1, ok2, ok3 bool
		s.UtilizationPercent, ok1 = number(rec[1])
		s.MemoryUsedMiB, ok2 = number(rec[2])
		s.MemoryTotalMiB, ok3 = number(rec[3])
		if !ok1 || !ok2 || !ok3 {
			return nil, false
		}
		res = append(res, s)
	}
	return res, true
}

// number parses an nvidia-smi nounits value; "[N/A]" and friends are not
// numbers.
func number(s string) (float64, bool) {
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	return f, err == nil
}
