#!/bin/bash
# Second run on the real node: the package's own tests (TestReal*), the
# Vulkan loader with NVIDIA's ICD now that glvnd is present, and an NVENC
# session probe. Expects build/gpu-carry with gpu.test (CGO_ENABLED=0 go test
# -c) and the .deb files listed in record.sh plus libglvnd0.
set -u
mkdir -p /opt/vk; for f in build/gpu-carry/*.deb; do dpkg -x $f /opt/vk; done
V=/opt/vk/usr/lib/x86_64-linux-gnu
sed -i "s#/usr/lib/x86_64-linux-gnu#$V#" /opt/vk/usr/share/vulkan/icd.d/*.json
export LD_LIBRARY_PATH=$V:/usr/local/nvidia/lib64
NV=/usr/share/vulkan/icd.d/nvidia_icd.json
LVP=/opt/vk/usr/share/vulkan/icd.d/lvp_icd.x86_64.json
VI=/opt/vk/usr/bin/vulkaninfo
s() { echo; echo "### $*"; env "$@" $VI --summary 2>&1 | grep -E '^GPU[0-9]|deviceName|deviceType|driverID|driverInfo|ERROR|rror' ; }
{
echo "### ldd libGLX_nvidia (without glvnd's dir)"; LD_LIBRARY_PATH=/usr/local/nvidia/lib64 ldd /usr/local/nvidia/lib64/libGLX_nvidia.so.0 | grep -E 'not found|GLdispatch'
s VK_LOADER_DEBUG=error,warn
s XDG_DATA_DIRS=/opt/vk/usr/share:/usr/share
s XDG_DATA_DIRS=/opt/vk/usr/share:/usr/share NODEVICE_SELECT=1
s XDG_DATA_DIRS=/opt/vk/usr/share:/usr/share VK_LOADER_DISABLE_SELECT=1 NODEVICE_SELECT=1
s VK_DRIVER_FILES=$LVP:$NV VK_LOADER_DISABLE_SELECT=1 NODEVICE_SELECT=1
s VK_DRIVER_FILES=$LVP:$NV
s VK_DRIVER_FILES=$NV:/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
s VK_DRIVER_FILES=$NV
s VK_ICD_FILENAMES=$NV
s VK_DRIVER_FILES=$NV CUDA_VISIBLE_DEVICES=-1
s VK_DRIVER_FILES=$NV NVIDIA_VISIBLE_DEVICES=void CUDA_VISIBLE_DEVICES=
echo; echo "### PCI bus info and UUIDs from the NVIDIA ICD"
VK_DRIVER_FILES=$NV $VI 2>&1 | grep -iE -A5 'PCIBusInfoProperties' | head -12
VK_DRIVER_FILES=$NV $VI 2>&1 | grep -iE 'deviceUUID|driverVersion|conformanceVersion|apiVersion' | head -8
echo; echo "### vkcube/headless? device group + queue flags"
VK_DRIVER_FILES=$NV $VI 2>&1 | grep -iE 'queueFlags' | head -4
} > $OUT/vulkan2.txt 2>&1
{
echo "### NVENC probe"; python3 driver/gpu/testdata/h100/nvenc_probe.py
} > $OUT/nvenc.txt 2>&1
export VULKANINFO="VK_DRIVER_FILES=$NV $VI --summary 2>&1 | grep -E 'GPU[0-9]|deviceName|ERROR|rror' ; echo vulkaninfo rc=\$?"
PIXELSTREAM_GPU_REAL=1 ./build/gpu-carry/gpu.test -test.run Real -test.v -test.count=1 > $OUT/realtest.txt 2>&1
echo "realtest rc=$?" >> $OUT/realtest.txt
ls /sys/fs/cgroup | grep pixelstream || echo "test cgroups removed"
