using Higher.Cuda;

namespace Higher.Conformance;

/// <summary>
/// The CUDA device of every CUDA binding in this assembly: the process-wide backend of cuda:0
/// (<see cref="CudaBackend.TryGetShared"/>), registered with <see cref="Backends"/> on first use,
/// once, thread-safely. One backend for all suites, because tensors of one CUDA backend cannot be
/// used by another and the suites run in parallel. Without a GPU, <see cref="SkipReason"/> carries
/// <see cref="CudaBackend.TryCreate"/>'s reason and every bound test reports skipped with it.
/// </summary>
internal static class SharedCuda
{
    private static readonly Lazy<(CudaBackend? Backend, string? SkipReason)> State = new(() =>
    {
        if (!CudaBackend.TryGetShared(out var backend, out string reason))
        {
            return (null, $"CUDA backend unavailable: {reason}");
        }
        Backends.Register(backend!);
        return (backend, null);
    });

    /// <summary>cuda:0.</summary>
    public static Device Device => Device.Cuda(0);

    /// <summary>Why CUDA cannot be used here, or null once the backend is registered.</summary>
    public static string? SkipReason => State.Value.SkipReason;

    /// <summary>The registered backend; throws with the reason when there is none.</summary>
    public static CudaBackend Backend => State.Value.Backend ?? throw new InvalidOperationException(SkipReason);
}
