using System.Runtime.InteropServices;

namespace Higher.Distributed.Nccl;

/// <summary>ncclUniqueId: 128 opaque bytes, made by rank 0 and broadcast over MPI.</summary>
[StructLayout(LayoutKind.Sequential, Size = NcclLibrary.UniqueIdBytes)]
internal struct NcclUniqueId
{
    private byte _first;
}

/// <summary>
/// libnccl, loaded at run time (libnccl.so.2), with the entry points the collectives use as function
/// pointers. Loading never throws: <see cref="TryGet"/> returns the reason when NCCL is absent.
/// </summary>
internal sealed unsafe class NcclLibrary
{
    /// <summary>Size of ncclUniqueId (NCCL_UNIQUE_ID_BYTES).</summary>
    public const int UniqueIdBytes = 128;

    /// <summary>Environment variable that names the libnccl to load before the default sonames.</summary>
    public const string PathVariable = "HIGHER_NCCL_LIBRARY";

    /// <summary>ncclSuccess.</summary>
    public const int Success = 0;

    /// <summary>ncclFloat32 and ncclFloat64 in ncclDataType_t.</summary>
    public const int Float32 = 7, Float64 = 8, Uint8 = 1;

    /// <summary>ncclSum, ncclMax, ncclMin in ncclRedOp_t.</summary>
    public const int OpSum = 0, OpMax = 2, OpMin = 3;

    private static readonly Lock Gate = new();
    private static NcclLibrary? s_loaded;
    private static string? s_failure;

    private NcclLibrary(nint handle, string path)
    {
        Path = path;
        GetVersion = (delegate* unmanaged<int*, int>)NativeLibrary.GetExport(handle, "ncclGetVersion");
        GetUniqueId = (delegate* unmanaged<NcclUniqueId*, int>)NativeLibrary.GetExport(handle, "ncclGetUniqueId");
        CommInitRank = (delegate* unmanaged<nint*, int, NcclUniqueId, int, int>)NativeLibrary.GetExport(handle, "ncclCommInitRank");
        CommDestroy = (delegate* unmanaged<nint, int>)NativeLibrary.GetExport(handle, "ncclCommDestroy");
        AllReduce = (delegate* unmanaged<nint, nint, nuint, int, int, nint, nint, int>)NativeLibrary.GetExport(handle, "ncclAllReduce");
        Broadcast = (delegate* unmanaged<nint, nint, nuint, int, int, nint, nint, int>)NativeLibrary.GetExport(handle, "ncclBroadcast");
        GroupStart = (delegate* unmanaged<int>)NativeLibrary.GetExport(handle, "ncclGroupStart");
        GroupEnd = (delegate* unmanaged<int>)NativeLibrary.GetExport(handle, "ncclGroupEnd");
        GetErrorString = (delegate* unmanaged<int, nint>)NativeLibrary.GetExport(handle, "ncclGetErrorString");
    }

    /// <summary>The soname or path it was loaded from.</summary>
    public string Path { get; }

#pragma warning disable CA1051 // function pointers as fields: the entry points
    public readonly delegate* unmanaged<int*, int> GetVersion;
    public readonly delegate* unmanaged<NcclUniqueId*, int> GetUniqueId;
    public readonly delegate* unmanaged<nint*, int, NcclUniqueId, int, int> CommInitRank;
    public readonly delegate* unmanaged<nint, int> CommDestroy;
    public readonly delegate* unmanaged<nint, nint, nuint, int, int, nint, nint, int> AllReduce;
    public readonly delegate* unmanaged<nint, nint, nuint, int, int, nint, nint, int> Broadcast;
    public readonly delegate* unmanaged<int> GroupStart;
    public readonly delegate* unmanaged<int> GroupEnd;
    public readonly delegate* unmanaged<int, nint> GetErrorString;
#pragma warning restore CA1051

    /// <summary>Sonames probed: <c>$HIGHER_NCCL_LIBRARY</c>, libnccl.so.2, libnccl.so.</summary>
    public static IReadOnlyList<string> Candidates(string? environmentValue)
    {
        var names = new List<string>();
        if (!string.IsNullOrWhiteSpace(environmentValue))
        {
            names.Add(environmentValue);
        }
        names.AddRange(["libnccl.so.2", "libnccl.so"]);
        return names.Distinct(StringComparer.Ordinal).ToList();
    }

    /// <summary>The process's NCCL, loaded on the first call; null with the reason when absent.</summary>
    public static NcclLibrary? TryGet(out string reason)
    {
        lock (Gate)
        {
            if (s_loaded is null && s_failure is null)
            {
                s_loaded = TryLoad(Candidates(Environment.GetEnvironmentVariable(PathVariable)), out s_failure);
            }
            reason = s_failure ?? "";
            return s_loaded;
        }
    }

    /// <summary>Loads the first of <paramref name="names"/> that opens and exports the NCCL 2 entry points; null with the reason otherwise.</summary>
    public static NcclLibrary? TryLoad(IReadOnlyList<string> names, out string reason)
    {
        foreach (string name in names)
        {
            if (!NativeLibrary.TryLoad(name, out nint handle))
            {
                continue;
            }
            foreach (string symbol in Symbols)
            {
                if (!NativeLibrary.TryGetExport(handle, symbol, out _))
                {
                    reason = $"{name} lacks {symbol} (NCCL 2.x is needed)";
                    return null;
                }
            }
            reason = "";
            return new NcclLibrary(handle, name);
        }
        reason = $"NCCL not found (tried {string.Join(", ", names)}): install NCCL 2 (libnccl2) or set {PathVariable}";
        return null;
    }

    private static readonly string[] Symbols =
    [
        "ncclGetVersion", "ncclGetUniqueId", "ncclCommInitRank", "ncclCommDestroy", "ncclAllReduce", "ncclBroadcast",
        "ncclGroupStart", "ncclGroupEnd", "ncclGetErrorString",
    ];

    /// <summary>ncclGetErrorString of <paramref name="result"/>.</summary>
    public string Describe(int result)
    {
        nint text = GetErrorString(result);
        return text == 0 ? $"ncclResult_t {result}" : Marshal.PtrToStringUTF8(text) ?? $"ncclResult_t {result}";
    }
}
