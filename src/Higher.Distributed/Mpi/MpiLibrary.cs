using System.Runtime.InteropServices;

namespace Higher.Distributed.Mpi;

/// <summary>
/// Open MPI's libmpi, loaded at run time, with its entry points as function pointers and its
/// predefined handles. Open MPI's MPI_COMM_WORLD, MPI_DOUBLE, MPI_SUM... are not constants: each is
/// the address of an exported global (<c>ompi_mpi_comm_world</c>, <c>ompi_mpi_double</c>,
/// <c>ompi_mpi_op_sum</c>), which <see cref="NativeLibrary.GetExport"/> resolves. MPICH and its
/// derivatives (Intel MPI, MVAPICH) use integer handles instead; they are detected and refused by name.
/// The library is opened with RTLD_GLOBAL, as Open MPI's plug-ins need to see its symbols.
/// </summary>
internal sealed unsafe partial class MpiLibrary
{
    /// <summary>Environment variable that names the libmpi to load (a path or a soname) before the default candidates.</summary>
    public const string PathVariable = "HIGHER_MPI_LIBRARY";

    /// <summary>How to get Open MPI on Debian and Ubuntu, quoted in every "not found" message.</summary>
    public const string InstallHint = "install Open MPI (apt-get install openmpi-bin libopenmpi-dev) or set " + PathVariable + " to its libmpi.so";

    /// <summary>MPI_IN_PLACE in Open MPI's mpi.h: <c>((void *) 1)</c>.</summary>
    public const nint InPlace = 1;

    /// <summary>MPI_SUCCESS.</summary>
    public const int Success = 0;

    /// <summary>MPI_THREAD_SERIALIZED: any thread may call, one at a time (the communicator holds a lock).</summary>
    public const int ThreadSerialized = 2;

    private const int RtldNow = 2;
    private const int RtldGlobal = 0x100;

    private static readonly Lock Gate = new();
    private static MpiLibrary? s_loaded;
    private static string? s_failure;

    private MpiLibrary(nint handle, string path)
    {
        Handle = handle;
        Path = path;
        Initialized = (delegate* unmanaged<int*, int>)Export("MPI_Initialized");
        Finalized = (delegate* unmanaged<int*, int>)Export("MPI_Finalized");
        InitThread = (delegate* unmanaged<int*, nint, int, int*, int>)Export("MPI_Init_thread");
        FinalizeMpi = (delegate* unmanaged<int>)Export("MPI_Finalize");
        CommRank = (delegate* unmanaged<nint, int*, int>)Export("MPI_Comm_rank");
        CommSize = (delegate* unmanaged<nint, int*, int>)Export("MPI_Comm_size");
        CommSetErrhandler = (delegate* unmanaged<nint, nint, int>)Export("MPI_Comm_set_errhandler");
        Allreduce = (delegate* unmanaged<nint, nint, int, nint, nint, nint, int>)Export("MPI_Allreduce");
        Bcast = (delegate* unmanaged<nint, int, nint, int, nint, int>)Export("MPI_Bcast");
        Barrier = (delegate* unmanaged<nint, int>)Export("MPI_Barrier");
        Allgather = (delegate* unmanaged<nint, int, nint, nint, int, nint, nint, int>)Export("MPI_Allgather");
        Allgatherv = (delegate* unmanaged<nint, int, nint, nint, int*, int*, nint, nint, int>)Export("MPI_Allgatherv");
        ErrorString = (delegate* unmanaged<int, byte*, int*, int>)Export("MPI_Error_string");
        GetLibraryVersion = (delegate* unmanaged<byte*, int*, int>)Export("MPI_Get_library_version");
        CommWorld = Export("ompi_mpi_comm_world");
        Double = Export("ompi_mpi_double");
        Float = Export("ompi_mpi_float");
        Byte = Export("ompi_mpi_byte");
        Int64 = Export("ompi_mpi_int64_t");
        Int = Export("ompi_mpi_int");
        OpSum = Export("ompi_mpi_op_sum");
        OpMax = Export("ompi_mpi_op_max");
        OpMin = Export("ompi_mpi_op_min");
        ErrorsReturn = Export("ompi_mpi_errors_return");
    }

    /// <summary>The dlopen handle.</summary>
    public nint Handle { get; }

    /// <summary>The name or path it was loaded from.</summary>
    public string Path { get; }

#pragma warning disable CA1051 // function pointers as fields: the entry points, read once per call
    public readonly delegate* unmanaged<int*, int> Initialized;
    public readonly delegate* unmanaged<int*, int> Finalized;
    public readonly delegate* unmanaged<int*, nint, int, int*, int> InitThread;
    public readonly delegate* unmanaged<int> FinalizeMpi;
    public readonly delegate* unmanaged<nint, int*, int> CommRank;
    public readonly delegate* unmanaged<nint, int*, int> CommSize;
    public readonly delegate* unmanaged<nint, nint, int> CommSetErrhandler;
    public readonly delegate* unmanaged<nint, nint, int, nint, nint, nint, int> Allreduce;
    public readonly delegate* unmanaged<nint, int, nint, int, nint, int> Bcast;
    public readonly delegate* unmanaged<nint, int> Barrier;
    public readonly delegate* unmanaged<nint, int, nint, nint, int, nint, nint, int> Allgather;
    public readonly delegate* unmanaged<nint, int, nint, nint, int*, int*, nint, nint, int> Allgatherv;
    public readonly delegate* unmanaged<int, byte*, int*, int> ErrorString;
    public readonly delegate* unmanaged<byte*, int*, int> GetLibraryVersion;
#pragma warning restore CA1051

    /// <summary>MPI_COMM_WORLD.</summary>
    public nint CommWorld { get; }

    /// <summary>MPI_DOUBLE.</summary>
    public nint Double { get; }

    /// <summary>MPI_FLOAT.</summary>
    public nint Float { get; }

    /// <summary>MPI_BYTE.</summary>
    public nint Byte { get; }

    /// <summary>MPI_INT64_T.</summary>
    public nint Int64 { get; }

    /// <summary>MPI_INT.</summary>
    public nint Int { get; }

    /// <summary>MPI_SUM.</summary>
    public nint OpSum { get; }

    /// <summary>MPI_MAX.</summary>
    public nint OpMax { get; }

    /// <summary>MPI_MIN.</summary>
    public nint OpMin { get; }

    /// <summary>MPI_ERRORS_RETURN.</summary>
    public nint ErrorsReturn { get; }

    /// <summary>
    /// Library names probed, in order: <c>$HIGHER_MPI_LIBRARY</c>, then Open MPI's sonames (libmpi.so.40 is
    /// Open MPI 3 to 5), then the unversioned development link, which may be another MPI (refused by name).
    /// </summary>
    public static IReadOnlyList<string> Candidates(string? environmentValue)
    {
        var names = new List<string>();
        if (!string.IsNullOrWhiteSpace(environmentValue))
        {
            names.Add(environmentValue);
        }
        names.AddRange(["libmpi.so.40", "libmpi.so.20", "libmpi.so.12", "libmpi.so"]);
        return names.Distinct(StringComparer.Ordinal).ToList();
    }

    /// <summary>The process's MPI library, loaded on the first call; null with the reason when there is none usable.</summary>
    public static MpiLibrary? TryGet(out string reason)
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

    /// <summary>
    /// Loads the first of <paramref name="names"/> that opens and checks that it is Open MPI. Returns null,
    /// with the reason (what was tried and how to install Open MPI, or which other MPI was found), otherwise.
    /// </summary>
    public static MpiLibrary? TryLoad(IReadOnlyList<string> names, out string reason)
    {
        var errors = new List<string>();
        foreach (string name in names)
        {
            nint handle = Open(name, out string? error);
            if (handle == 0)
            {
                errors.Add(error is null ? name : $"{name} ({error})");
                continue;
            }
            if (!NativeLibrary.TryGetExport(handle, "ompi_mpi_comm_world", out _))
            {
                reason = NotOpenMpi(name, LibraryVersion(handle));
                return null;
            }
            foreach (string symbol in RequiredSymbols)
            {
                if (!NativeLibrary.TryGetExport(handle, symbol, out _))
                {
                    reason = $"{name} is Open MPI but lacks {symbol} (an MPI older than 3.0?): {InstallHint}";
                    return null;
                }
            }
            reason = "";
            return new MpiLibrary(handle, name);
        }
        reason = $"No MPI library found (tried {string.Join(", ", errors)}): {InstallHint}";
        return null;
    }

    /// <summary>The refusal of an MPI that is not Open MPI (integer handles: MPICH, Intel MPI, MVAPICH...).</summary>
    public static string NotOpenMpi(string name, string? version) =>
        $"{name} is not Open MPI ({(string.IsNullOrWhiteSpace(version) ? "it exports no ompi_mpi_comm_world" : FirstLine(version))}): " +
        "Higher.Distributed binds Open MPI's ABI, whose handles (MPI_COMM_WORLD, MPI_DOUBLE, MPI_SUM) are exported globals; " +
        "MPICH-family libraries use integer handles, which it does not support. " + InstallHint;

    /// <summary>The symbols the binding resolves (a library lacking one is refused before use).</summary>
    private static readonly string[] RequiredSymbols =
    [
        "MPI_Initialized", "MPI_Finalized", "MPI_Init_thread", "MPI_Finalize", "MPI_Comm_rank", "MPI_Comm_size",
        "MPI_Comm_set_errhandler", "MPI_Allreduce", "MPI_Bcast", "MPI_Barrier", "MPI_Allgather", "MPI_Allgatherv",
        "MPI_Error_string", "MPI_Get_library_version", "ompi_mpi_double", "ompi_mpi_float", "ompi_mpi_byte",
        "ompi_mpi_int64_t", "ompi_mpi_int", "ompi_mpi_op_sum", "ompi_mpi_op_max", "ompi_mpi_op_min", "ompi_mpi_errors_return",
    ];

    /// <summary>MPI_Get_library_version's text (callable before MPI_Init), or null.</summary>
    public string? Version => LibraryVersion(Handle);

    /// <summary>MPI_Error_string of <paramref name="code"/>.</summary>
    public string DescribeError(int code)
    {
        byte* text = stackalloc byte[512];
        int length = 0;
        return ErrorString(code, text, &length) == Success && length > 0
            ? Marshal.PtrToStringUTF8((nint)text, Math.Min(length, 511))
            : $"MPI error {code}";
    }

    private static string? LibraryVersion(nint handle)
    {
        if (!NativeLibrary.TryGetExport(handle, "MPI_Get_library_version", out nint address))
        {
            return null;
        }
        var get = (delegate* unmanaged<byte*, int*, int>)address;
        // MPI_MAX_LIBRARY_VERSION_STRING: 256 in Open MPI, 8192 in MPICH.
        byte* text = stackalloc byte[8192];
        int length = 0;
        return get(text, &length) == Success ? Marshal.PtrToStringUTF8((nint)text, Math.Clamp(length, 0, 8191)).TrimEnd('\0') : null;
    }

    private static string FirstLine(string text)
    {
        string line = text.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).FirstOrDefault() ?? text;
        return line.TrimEnd(',');
    }

    private nint Export(string name) => NativeLibrary.GetExport(Handle, name);

    /// <summary>dlopen(name, RTLD_NOW | RTLD_GLOBAL) through glibc; elsewhere the runtime's own loader.</summary>
    private static nint Open(string name, out string? error)
    {
        error = null;
        if (OperatingSystem.IsLinux())
        {
            try
            {
                nint handle = Dl.dlopen(name, RtldNow | RtldGlobal);
                if (handle == 0)
                {
                    nint message = Dl.dlerror();
                    error = message == 0 ? null : Marshal.PtrToStringUTF8(message);
                }
                return handle;
            }
            catch (DllNotFoundException)
            {
                // Not glibc (musl): fall through to the runtime's loader.
            }
            catch (EntryPointNotFoundException)
            {
            }
        }
        return NativeLibrary.TryLoad(name, out nint h) ? h : 0;
    }

    private static partial class Dl
    {
        [LibraryImport("libc.so.6", StringMarshalling = StringMarshalling.Utf8)]
        public static partial nint dlopen(string file, int mode);

        [LibraryImport("libc.so.6")]
        public static partial nint dlerror();
    }
}
