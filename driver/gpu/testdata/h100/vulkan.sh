#!/bin/bash
# Vulkan loader behaviour on a real node: device order with and without
# lavapipe, Mesa's device-select layer, loader sorting, VK_DRIVER_FILES.
set -u
mkdir -p /opt/vk; for f in build/gpu-carry/*.deb; do dpkg -x $f /opt/vk; done
V=/opt/vk/usr/lib/x86_64-linux-gnu
sed -i "s#/usr/lib/x86_64-linux-gnu#$V#" /opt/vk/usr/share/vulkan/icd.d/*.json
ls /opt/vk/usr/share/vulkan/icd.d /opt/vk/usr/share/vulkan/implicit_layer.d
cat /opt/vk/usr/share/vulkan/implicit_layer.d/*.json
export LD_LIBRARY_PATH=$V
NV=$(ls /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json /usr/share/vulkan/icd.d/nvidia_icd.json /etc/vulkan/icd.d/nvidia_icd.json 2>/dev/null | head -1)
LVP=/opt/vk/usr/share/vulkan/icd.d/lvp_icd.x86_64.json
echo "nvidia icd: $NV"
VI=/opt/vk/usr/bin/vulkaninfo
X="XDG_DATA_DIRS=/opt/vk/usr/share:$(dirname $(dirname $(dirname $NV))):/usr/share"
s() { echo; echo "### $*"; env "$@" $VI --summary 2>&1 | sed -n '/^Devices/,$p' | grep -E 'GPU[0-9]|deviceName|deviceType|driverID|^ERROR|error' ; }
s $X
s $X NODEVICE_SELECT=1
s $X VK_LOADER_DISABLE_SELECT=1
s $X VK_LOADER_DISABLE_SELECT=1 NODEVICE_SELECT=1
s VK_DRIVER_FILES=$LVP:$NV VK_LOADER_DISABLE_SELECT=1 NODEVICE_SELECT=1
s VK_DRIVER_FILES=$NV:$LVP VK_LOADER_DISABLE_SELECT=1 NODEVICE_SELECT=1
s VK_DRIVER_FILES=$LVP:$NV
s VK_ICD_FILENAMES=$LVP:$NV
s VK_DRIVER_FILES=$NV
s VK_DRIVER_FILES=$NV CUDA_VISIBLE_DEVICES=-1
s VK_DRIVER_FILES=$NV CUDA_VISIBLE_DEVICES=GPU-00000000-0000-0000-0000-000000000000 NVIDIA_VISIBLE_DEVICES=none
s $X MESA_VK_DEVICE_SELECT=list
echo; echo "### loader debug, nvidia + lvp"
env $X VK_LOADER_DEBUG=driver $VI --summary 2>&1 | grep -iE 'sort|order|driver|icd' | head -40
echo; echo "### pci bus info from the NVIDIA ICD"
VK_DRIVER_FILES=$NV $VI 2>&1 | grep -A6 -iE 'PCIBusInfo' | head -20
VK_DRIVER_FILES=$NV $VI 2>&1 | grep -iE 'deviceUUID|driverVersion|driverInfo|apiVersion|conformance' | head
