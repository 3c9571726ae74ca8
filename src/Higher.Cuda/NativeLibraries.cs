using System.Reflection;
using System.Runtime.InteropServices;

namespace Higher.Cuda;

/// <summary>
/// Finds and loads libcudart, libcublas and libhigher_kernels, and resolves the logical names the
/// imports use. Loading never throws: each step records why it failed, so that
/// <see cref="CudaBackend.TryCreate"/> can say what is missing.
/// </summary>
internal static class NativeLibraries
{
    /// <summary>Logical import name of the CUDA runtime.</summary>
    public const string Runtime = "higher_cudart";

    /// <summary>Logical import name of cuBLAS.</summary>
    public const string Blas = "higher_cublas";

    /// <summary>Logical import name of our kernels.</summary>
    public const string Kernels = "higher_kernels";

    /// <summary>File name of our kernel library.</summary>
    public const string KernelsFileName = "libhigher_kernels.so";

    /// <summary>Environment variable that names the kernel library (a file, or a folder that holds it).</summary>
    public const string KernelsPathVariable = "HIGHER_KERNELS_PATH";

    /// <summary>The runtime identifier whose native asset the Higher.Cuda package carries the kernels as (runtimes/linux-x64/native/).</summary>
    public const string PackagedRid = "linux-x64";

    private static readonly Lock Gate = new();
    private static bool s_resolverInstalled;
    private static nint s_runtime;
    private static nint s_blas;
    private static nint s_kernels;

    /// <summary>True once the CUDA runtime is loaded (its imports may be called).</summary>
    public static bool RuntimeLoaded => Volatile.Read(ref s_runtime) != 0;

    /// <summary>True once libhigher_kernels is loaded.</summary>
    public static bool KernelsLoaded => Volatile.Read(ref s_kernels) != 0;

    /// <summary>
    /// Sonames probed for the CUDA runtime, newest first. <paramref name="preferredMajor"/> (the CUDA
    /// major version libhigher_kernels was built against) goes first, so that the process holds one runtime.
    /// </summary>
    public static IReadOnlyList<string> RuntimeCandidates(int? preferredMajor = null) =>
        Candidates(preferredMajor, RuntimeSoname, ["libcudart.so.13", "libcudart.so.12", "libcudart.so.11.0", "libcudart.so"]);

    /// <summary>Sonames probed for cuBLAS, newest first, the kernels' CUDA major version first.</summary>
    public static IReadOnlyList<string> BlasCandidates(int? preferredMajor = null) =>
        Candidates(preferredMajor, major => $"libcublas.so.{major}", ["libcublas.so.13", "libcublas.so.12", "libcublas.so.11", "libcublas.so"]);

    /// <summary>The runtime's soname for a CUDA major version (11 is the odd one: libcudart.so.11.0).</summary>
    public static string RuntimeSoname(int major) => major == 11 ? "libcudart.so.11.0" : $"libcudart.so.{major}";

    /// <summary>
    /// Paths probed for libhigher_kernels, in order: <c>$HIGHER_KERNELS_PATH</c> (a file or a folder),
    /// next to the application (where this assembly is deployed, NativeAOT included), in the application's
    /// runtimes/linux-x64/native/ (the Higher.Cuda package's asset in a portable app), then native/build/
    /// under the current folder and each of its parents.
    /// </summary>
    public static IReadOnlyList<string> KernelsCandidates(string? environmentValue, string currentDirectory, string? appDirectory)
    {
        var paths = new List<string>();
        if (!string.IsNullOrWhiteSpace(environmentValue))
        {
            paths.Add(Directory.Exists(environmentValue) ? Path.Combine(environmentValue, KernelsFileName) : environmentValue);
        }
        if (!string.IsNullOrEmpty(appDirectory))
        {
            paths.Add(Path.Combine(appDirectory, KernelsFileName));
            // Where a portable (RID-less) app gets the Higher.Cuda package's native asset.
            paths.Add(Path.Combine(appDirectory, "runtimes", PackagedRid, "native", KernelsFileName));
        }
        for (var dir = new DirectoryInfo(currentDirectory); dir is not null; dir = dir.Parent)
        {
            paths.Add(Path.Combine(dir.FullName, "native", "build", KernelsFileName));
        }
        return paths.Distinct(StringComparer.Ordinal).ToList();
    }

    /// <summary>Installs the resolver of the logical names (once per process).</summary>
    public static void EnsureResolver()
    {
        lock (Gate)
        {
            if (!s_resolverInstalled)
            {
                NativeLibrary.SetDllImportResolver(typeof(NativeLibraries).Assembly, Resolve);
                s_resolverInstalled = true;
            }
        }
    }

    /// <summary>
    /// Loads what the backend needs, in the order that gives the most useful reason when something is
    /// missing. Returns null on success, else why it failed.
    /// </summary>
    public static string? TryLoadAll()
    {
        EnsureResolver();
        lock (Gate)
        {
            // Load the kernels first (quietly) so that we can ask which CUDA runtime they link:
            // probing that soname then returns the copy the loader already mapped.
            string? kernelsError = null;
            if (s_kernels == 0)
            {
                kernelsError = TryLoadKernels(out s_kernels);
            }
            int? kernelsMajor = null;
            if (s_kernels != 0)
            {
                kernelsMajor = KernelsRuntimeMajor();
            }

            if (s_runtime == 0)
            {
                var names = RuntimeCandidates(kernelsMajor);
                s_runtime = TryLoadFirst(names);
                if (s_runtime == 0)
                {
                    return $"libcudart.so.* not found (tried {string.Join(", ", names)}): install the CUDA runtime or add its folder to LD_LIBRARY_PATH";
                }
            }
            if (s_blas == 0)
            {
                var names = BlasCandidates(kernelsMajor);
                s_blas = TryLoadFirst(names);
                if (s_blas == 0)
                {
                    return $"libcublas.so.* not found (tried {string.Join(", ", names)}): install cuBLAS or add its folder to LD_LIBRARY_PATH";
                }
            }

            // Checked on every call: the libraries stay loaded, but a missing driver or device is
            // reported each time rather than remembered as success.
            string? deviceProblem = DeviceProblem();
            if (deviceProblem is not null)
            {
                return deviceProblem;
            }
            if (s_kernels == 0)
            {
                return kernelsError;
            }
            return null;
        }
    }

    /// <summary>Why no CUDA device can be used (driver missing, no device), or null.</summary>
    private static string? DeviceProblem()
    {
        var status = CudaNative.cudaGetDeviceCount(out int count);
        if (status != CudaError.Success)
        {
            // Clear the error so that it is not reported by a later, unrelated call.
            _ = CudaNative.cudaGetLastError();
            return $"cudaGetDeviceCount returned {CudaStatus.RuntimeName((int)status)} ({DescribeRuntimeError((int)status)})";
        }
        return count == 0 ? "cudaGetDeviceCount found no CUDA device" : null;
    }

    /// <summary>The runtime's own description of a status, or null when unavailable.</summary>
    public static string? DescribeRuntimeError(int status)
    {
        if (!RuntimeLoaded)
        {
            return null;
        }
        nint text = CudaNative.cudaGetErrorString(status);
        return text == 0 ? null : Marshal.PtrToStringUTF8(text);
    }

    private static string? TryLoadKernels(out nint handle)
    {
        handle = 0;
        var candidates = KernelsCandidates(Environment.GetEnvironmentVariable(KernelsPathVariable),
            Environment.CurrentDirectory, AppContext.BaseDirectory);
        foreach (string path in candidates)
        {
            if (!File.Exists(path))
            {
                continue;
            }
            try
            {
                handle = NativeLibrary.Load(path);
                return null;
            }
            catch (DllNotFoundException e)
            {
                return $"{path} exists but could not be loaded: {e.Message}";
            }
            catch (BadImageFormatException e)
            {
                return $"{path} exists but is not a loadable library: {e.Message}";
            }
        }
        return $"{KernelsFileName} not found: build native/ with cmake (native/build.sh), or set {KernelsPathVariable} (searched {string.Join(", ", candidates)})";
    }

    private static int? KernelsRuntimeMajor()
    {
        try
        {
            if (CudaNative.hk_runtime_version(out int version) == CudaError.Success && version > 0)
            {
                return version / 1000;
            }
        }
        catch (EntryPointNotFoundException)
        {
            // An older or foreign library: the ABI check in TryCreate names the problem.
        }
        return null;
    }

    private static nint TryLoadFirst(IReadOnlyList<string> names)
    {
        foreach (string name in names)
        {
            if (NativeLibrary.TryLoad(name, out nint handle))
            {
                return handle;
            }
        }
        return 0;
    }

    private static List<string> Candidates(int? preferredMajor, Func<int, string> soname, string[] defaults)
    {
        var list = new List<string>();
        if (preferredMajor is int major && major > 0)
        {
            list.Add(soname(major));
        }
        foreach (string name in defaults)
        {
            if (!list.Contains(name))
            {
                list.Add(name);
            }
        }
        return list;
    }

    private static nint Resolve(string libraryName, Assembly assembly, DllImportSearchPath? searchPath) => libraryName switch
    {
        Runtime => Volatile.Read(ref s_runtime),
        Blas => Volatile.Read(ref s_blas),
        Kernels => Volatile.Read(ref s_kernels),
        _ => 0,
    };
}
