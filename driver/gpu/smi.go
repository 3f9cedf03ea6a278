package gpu

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// smiTimeout bounds every nvidia-smi call: a wedged GPU can make it hang, and
// neither the fingerprint nor the stats call may hang with it.
const smiTimeout = 5 * time.Second

// Exec is the RunFunc for real nodes: it runs the command with
// exec.CommandContext and returns its standard output; a non-zero exit is an
// error carrying the command's standard error.
func Exec(ctx context.Context, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		if msg := strings.TrimSpace(stderr.String()); msg != "" {
			return out, fmt.Errorf("%s: %w: %s", name, err, msg)
		}
		if msg := strings.TrimSpace(string(out)); msg != "" {
			return out, fmt.Errorf("%s: %w: %s", name, err, msg)
		}
		return out, fmt.Errorf("%s: %w", name, err)
	}
	return out, nil
}

// smiQueryFields is the --query-gpu list detection uses; parseSMIQuery
// expects this order.
const smiQueryFields = "index,uuid,name,pci.bus_id,mig.mode.current,driver_version"

// smiGPU is one line of the nvidia-smi --query-gpu output.
type smiGPU struct {
	Index         int
	UUID          string
	Name          string
	BusID         string
	MIG           bool
	DriverVersion string
}

// parseSMIQuery parses `nvidia-smi --query-gpu=<smiQueryFields>
// --format=csv,noheader` output.
func parseSMIQuery(out string) ([]smiGPU, error) {
	r := csv.NewReader(strings.NewReader(out))
	r.TrimLeadingSpace = true
	r.FieldsPerRecord = -1
	recs, err := r.ReadAll()
	if err != nil {
		return nil, fmt.Errorf("parse nvidia-smi csv: %w", err)
	}
	var gpus []smiGPU
	for i, rec := range recs {
		if len(rec) == 1 && strings.TrimSpace(rec[0]) == "" {
			continue
		}
		if len(rec) != 6 {
			return nil, fmt.Errorf("nvidia-smi line %d: want 6 fields (%s), got %d: %q", i+1, smiQueryFields, len(rec), strings.Join(rec, ","))
		}
		idx, err := strconv.Atoi(strings.TrimSpace(rec[0]))
		if err != nil {
			return nil, fmt.Errorf("nvidia-smi line %d: index %q is not a number", i+1, rec[0])
		}
		bus, err := normalizeBusID(rec[3])
		if err != nil {
			return nil, fmt.Errorf("nvidia-smi line %d: %w", i+1, err)
		}
		gpus = append(gpus, smiGPU{
			Index:         idx,
			UUID:          strings.TrimSpace(rec[1]),
			Name:          strings.TrimSpace(rec[2]),
			BusID:         bus,
			MIG:           strings.EqualFold(strings.TrimSpace(rec[4]), "Enabled"),
			DriverVersion: strings.TrimSpace(rec[5]),
		})
	}
	return gpus, nil
}

var (
	smiGPULineRE = regexp.MustCompile(`^GPU (\d+): .*\(UUID: (GPU-[0-9a-fA-F-]+)\)`)
	// R470+ prints "MIG 1g.10gb Device 0: (UUID: MIG-<uuid>)"; R450 printed
	// "MIG 1g.5gb Device 0: (UUID: MIG-GPU-<uuid>/1/0)". Both are accepted.
	smiMIGLineRE = regexp.MustCompile(`^\s+MIG (\S+)\s+Device\s+(\d+): \(UUID: (MIG-[^)]+)\)`)
)

// parseSMIList parses `nvidia-smi -L` and returns the MIG devices of each
// GPU, keyed by the GPU's UUID.
func parseSMIList(out string) map[string][]MIGDevice {
	res := map[string][]MIGDevice{}
	cur := ""
	for _, line := range strings.Split(out, "\n") {
		if m := smiGPULineRE.FindStringSubmatch(line); m != nil {
			cur = m[2]
			continue
		}
		if m := smiMIGLineRE.FindStringSubmatch(line); m != nil && cur != "" {
			n, _ := strconv.Atoi(m[2])
			res[cur] = append(res[cur], MIGDevice{UUID: m[3], Profile: m[1], Index: n})
		}
	}
	return res
}

// runSMI runs nvidia-smi with the detection timeout. A missing nvidia-smi is
// reported as errSMIMissing so callers can stay quiet about it.
func runSMI(ctx context.Context, run RunFunc, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, smiTimeout)
	defer cancel()
	out, err := run(ctx, "nvidia-smi", args...)
	if err != nil {
		if errors.Is(err, exec.ErrNotFound) {
			return nil, errSMIMissing
		}
		return nil, fmt.Errorf("nvidia-smi %s: %w", strings.Join(args, " "), err)
	}
	return out, nil
}

var errSMIMissing = errors.New("nvidia-smi not found")
