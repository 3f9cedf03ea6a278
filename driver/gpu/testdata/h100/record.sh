#!/bin/bash
# Records the inputs driver/gpu reads, on a real NVIDIA node, into $OUT.
# Run as root on the GPU node; it changes no device setting. The Vulkan part
# expects Debian's libvulkan1, vulkan-tools and mesa-vulkan-drivers (plus their
# libraries) as .deb files in build/gpu-carry; they are unpacked into /opt/vk,
# never over /.
set -u
R=$OUT/rec; mkdir -p $R/root
log() { echo "### $*"; }
cp_proc() { # copy a file's content (proc files have size 0 for tar)
  for f in "$@"; do [ -f "$f" ] || continue; mkdir -p "$R/root$(dirname "$f")"; timeout 2 cat "$f" >"$R/root$f" 2>/dev/null; done
}
{
log uname; uname -a; cat /etc/os-release | head -3
log go; which go && go version
log id; id
# /proc first, before anything opened the GPU (UUID may read as ? until the GPU is initialised)
log proc-before
for f in $(find /proc/driver/nvidia -type f 2>/dev/null); do echo "== $f"; timeout 2 cat "$f" 2>&1; done
cp_proc $(find /proc/driver/nvidia -type f 2>/dev/null)
mkdir -p $R/before; for d in /proc/driver/nvidia/gpus/*; do timeout 2 cat $d/information > "$R/before/information.$(basename $d | tr : _)"; done
log env; env | grep -iE 'nvidia|cuda|vk_|xdg|ld_library|glx|egl' | sort
log ldconfig; ldconfig -p | grep -iE 'nvidia|vulkan|EGL|GLX|libGL|cuda|encode'
cat /etc/ld.so.conf /etc/ld.so.conf.d/* 2>&1
mkdir -p $R/root/etc; cp /etc/ld.so.cache $R/root/etc/; cp -r /etc/ld.so.conf /etc/ld.so.conf.d $R/root/etc/ 2>/dev/null
log icd-dirs
for d in /etc/vulkan /usr/share/vulkan /usr/local/share/vulkan /usr/local/nvidia/share/vulkan /etc/xdg/vulkan /usr/share/glvnd /etc/glvnd /usr/local/nvidia/share/glvnd /usr/share/egl /usr/local/nvidia/share/egl; do
  [ -d $d ] || continue; find $d -type f -o -type l | while read f; do echo "== $f"; ls -l $f; cat $f; mkdir -p "$R/root$(dirname $f)"; cp -L $f "$R/root$f"; done; done
log libs
for f in $(find /usr/lib /usr/lib64 /lib64 /usr/local/nvidia /usr/local/lib -maxdepth 4 \( -name 'libnvidia-encode.so*' -o -name 'libGLX_nvidia.so*' -o -name 'libEGL_nvidia.so*' -o -name 'libnvidia-ml.so*' -o -name 'libcuda.so*' -o -name 'libnvcuvid.so*' -o -name 'libvulkan.so*' \) 2>/dev/null; ls /usr/local/nvidia/lib64/* 2>/dev/null); do
  ls -l $f; mkdir -p "$R/root$(dirname $f)"; [ -e "$R/root$f" ] || : >"$R/root$f"; done
log dev; ls -l /dev/nvidia* /dev/dri 2>&1; ls -lR /dev/nvidia-caps 2>&1; grep -iE 'nvidia|drm' /proc/devices
log sys-pci
for d in /sys/bus/pci/devices/*; do [ "$(cat $d/vendor)" = 0x10de ] || continue; echo "== $d"; for a in vendor device class subsystem_vendor subsystem_device numa_node; do echo "$a=$(cat $d/$a)"; done; cp_proc $d/vendor $d/device $d/class; done
log cgroup; stat -fc %T /sys/fs/cgroup; cat /proc/self/cgroup; mount | grep cgroup; cat /sys/fs/cgroup/cgroup.controllers 2>&1; ls /sys/fs/cgroup | head -40
log smi
nvidia-smi -L 2>&1 | tee $R/smi-L.txt
nvidia-smi --query-gpu=index,uuid,name,pci.bus_id,mig.mode.current,driver_version --format=csv,noheader 2>&1 | tee $R/smi-query.csv
nvidia-smi --query-gpu=utilization.gpu,memory.used,memory.total --format=csv,noheader,nounits 2>&1 | tee $R/smi-stats.csv
U=$(nvidia-smi --query-gpu=uuid --format=csv,noheader | head -1)
nvidia-smi --query-gpu=utilization.gpu,memory.used,memory.total --format=csv,noheader,nounits -i "$U" 2>&1 | tee $R/smi-stats-uuid.csv
nvidia-smi --query-gpu=uuid --format=csv,noheader -i 7 2>&1; echo "rc=$?"
nvidia-smi -q > $R/smi-q.txt 2>&1; nvidia-smi > $R/smi.txt 2>&1; cat $R/smi.txt
log proc-after
for d in /proc/driver/nvidia/gpus/*; do cat $d/information; done
mkdir -p $R/after; for d in /proc/driver/nvidia/gpus/*; do timeout 2 cat $d/information > "$R/after/information.$(basename $d | tr : _)"; done
log nvml-encoder
python3 - <<'PY' 2>&1
import pynvml as n
n.nvmlInit(); h=n.nvmlDeviceGetHandleByIndex(0)
print("name", n.nvmlDeviceGetName(h), "bus", n.nvmlDeviceGetPciInfo(h).busId)
for q,nm in ((n.NVML_ENCODER_QUERY_H264,"h264"),(n.NVML_ENCODER_QUERY_HEVC,"hevc")):
  try: print("encoder capacity", nm, n.nvmlDeviceGetEncoderCapacity(h,q))
  except Exception as e: print("encoder capacity", nm, "error:", e)
try: print("encoder utilization", n.nvmlDeviceGetEncoderUtilization(h))
except Exception as e: print("encoder utilization error:", e)
try: print("decoder utilization", n.nvmlDeviceGetDecoderUtilization(h))
except Exception as e: print("decoder utilization error:", e)
try: print("mig mode", n.nvmlDeviceGetMigMode(h))
except Exception as e: print("mig error:", e)
PY
log nvenc-open
python3 - <<'PY' 2>&1
import ctypes
try:
  l=ctypes.CDLL("libnvidia-encode.so.1"); v=ctypes.c_uint32(0)
  print("NvEncodeAPIGetMaxSupportedVersion rc", l.NvEncodeAPIGetMaxSupportedVersion(ctypes.byref(v)), "version", hex(v.value))
except OSError as e: print("dlopen libnvidia-encode.so.1:", e)
PY
} >$OUT/log.txt 2>&1
bash driver/gpu/testdata/h100/vulkan.sh >$OUT/vulkan.txt 2>&1
tar -C $R -czf $OUT/record.tgz .
