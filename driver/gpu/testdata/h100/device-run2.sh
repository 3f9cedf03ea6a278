#!/bin/bash
# Third run: why NVIDIA's Vulkan ICD gave no vkCreateInstance with glvnd's
# libGLdispatch alone, then loader ordering with NVIDIA + lavapipe, PCI bus
# info, and what Vulkan enumerates inside a cgroup that hides the GPU.
set -u
G=build/gpu-carry
mkdir -p /opt/vk; for f in $G/*.deb; do case $f in *libegl1*|*libglx0*|*libgl1_*|*libopengl0*|*libgles2*|*libvulkan1*|*libglvnd0*) ;; *) dpkg -x $f /opt/vk;; esac; done
V=/opt/vk/usr/lib/x86_64-linux-gnu
sed -i "s#/usr/lib/x86_64-linux-gnu#$V#" /opt/vk/usr/share/vulkan/icd.d/*.json
export LD_LIBRARY_PATH=/usr/local/nvidia/lib64:$V
NV=/usr/share/vulkan/icd.d/nvidia_icd.json
LVP=/opt/vk/usr/share/vulkan/icd.d/lvp_icd.x86_64.json
VI=/opt/vk/usr/bin/vulkaninfo
s() { echo; echo "### $*"; env "$@" $VI --summary 2>&1 | grep -E '^GPU[0-9]|deviceName|deviceType|driverID|ERROR' ; }
{
ls -l /dev/nvidia-modeset 2>&1
for step in libvulkan1 libglvnd0 libegl1 libglx0 "libgl1_ libopengl0 libgles2"; do
  for p in $step; do dpkg -x $(ls $G/${p}*.deb | head -1) /; done; ldconfig
  echo; echo "##### after unpacking $step into / (ldconfig)"; s VK_DRIVER_FILES=$NV
done
echo; echo "### loader debug for the NVIDIA ICD"; VK_LOADER_DEBUG=all VK_DRIVER_FILES=$NV $VI --summary 2>&1 | grep -iE 'nvidia|GLX|negotiat|icd' | head -30
s XDG_DATA_DIRS=/opt/vk/usr/share:/usr/share
s XDG_DATA_DIRS=/opt/vk/usr/share:/usr/share NODEVICE_SELECT=1
s XDG_DATA_DIRS=/opt/vk/usr/share:/usr/share VK_LOADER_DISABLE_SELECT=1 NODEVICE_SELECT=1
s VK_DRIVER_FILES=$LVP:$NV VK_LOADER_DISABLE_SELECT=1 NODEVICE_SELECT=1
s VK_DRIVER_FILES=$NV:$LVP VK_LOADER_DISABLE_SELECT=1 NODEVICE_SELECT=1
s VK_DRIVER_FILES=$LVP:$NV
s VK_DRIVER_FILES=$NV:/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
s VK_ICD_FILENAMES=$NV
s VK_DRIVER_FILES=$NV CUDA_VISIBLE_DEVICES=-1 NVIDIA_VISIBLE_DEVICES=void
s VK_DRIVER_FILES=$NV DISPLAY=:99
echo; echo "### PCI bus info and UUIDs from the NVIDIA ICD"
VK_DRIVER_FILES=$NV $VI 2>&1 | grep -iE -A6 'PCIBusInfoProperties' | head -14
VK_DRIVER_FILES=$NV $VI 2>&1 | grep -iE 'deviceUUID|driverVersion|conformanceVersion|apiVersion|maxImageDimension2D' | head -8
} > $OUT/vulkan3.txt 2>&1
export VULKANINFO="VK_DRIVER_FILES=$NV $VI --summary 2>&1 | grep -E 'GPU[0-9]|deviceName|ERROR|rror' ; echo vulkaninfo rc=\$?"
PIXELSTREAM_GPU_REAL=1 ./$G/gpu.test -test.run 'Real(Isolation|Detect)' -test.v -test.count=1 > $OUT/realtest2.txt 2>&1
echo "realtest rc=$?" >> $OUT/realtest2.txt
