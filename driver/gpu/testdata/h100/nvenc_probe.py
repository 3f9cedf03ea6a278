# Opens an NVENC session on GPU 0 through the driver's own libraries (ctypes,
# no SDK needed) and prints what the driver answers. Struct layouts and
# version words follow nvEncodeAPI.h of Video Codec SDK 12/13.
import ctypes, sys
cuda = ctypes.CDLL("libcuda.so.1")
enc = ctypes.CDLL("libnvidia-encode.so.1")
def ck(name, rc):
    print(f"{name} -> {rc}")
    return rc
ck("cuInit", cuda.cuInit(0))
dev = ctypes.c_int(0); ck("cuDeviceGet", cuda.cuDeviceGet(ctypes.byref(dev), 0))
ctx = ctypes.c_void_p(); ck("cuDevicePrimaryCtxRetain", cuda.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), dev))
ck("cuCtxSetCurrent", cuda.cuCtxSetCurrent(ctx))
maxv = ctypes.c_uint32(0); enc.NvEncodeAPIGetMaxSupportedVersion(ctypes.byref(maxv))
major, minor = maxv.value >> 4, maxv.value & 0xf
print(f"driver NVENC API max version {major}.{minor}")
for (ma, mi) in ((major, minor), (12, 0)):
    api = ma | (mi << 24)
    sv = lambda v: api | (v << 16) | (0x7 << 28)
    fl = (ctypes.c_uint64 * 512)()          # NV_ENCODE_API_FUNCTION_LIST, generously sized
    ctypes.c_uint32.from_buffer(fl, 0).value = sv(2)
    rc = ck(f"NvEncodeAPICreateInstance(api {ma}.{mi})", enc.NvEncodeAPICreateInstance(ctypes.byref(fl)))
    if rc != 0: continue
    fn = lambda i: fl[1 + i]                # slot i after the two uint32 header words
    params = (ctypes.c_uint8 * 4096)()      # NV_ENC_OPEN_ENCODE_SESSION_EX_PARAMS
    ctypes.c_uint32.from_buffer(params, 0).value = sv(1)   # version
    ctypes.c_uint32.from_buffer(params, 4).value = 1       # NV_ENC_DEVICE_TYPE_CUDA
    ctypes.c_void_p.from_buffer(params, 8).value = ctx.value
    ctypes.c_uint32.from_buffer(params, 24).value = api    # apiVersion
    OpenEx = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p))(fn(29))
    h = ctypes.c_void_p()
    rc = ck("nvEncOpenEncodeSessionEx (0=success, 1=NO_ENCODE_DEVICE, 2=UNSUPPORTED_DEVICE, 15=INVALID_VERSION)", OpenEx(ctypes.byref(params), ctypes.byref(h)))
    if rc == 0:
        n = ctypes.c_uint32(0)
        GuidCount = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint32))(fn(1))
        ck("nvEncGetEncodeGUIDCount", GuidCount(h, ctypes.byref(n))); print("codec GUIDs:", n.value)
        Destroy = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p)(fn(27)); ck("nvEncDestroyEncoder", Destroy(h))
    if rc != 15: break
