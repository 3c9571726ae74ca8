using Higher.Cuda;
using Higher.Tests.Shared;

namespace Higher.GradCheck;

/// <summary>
/// The cross-backend properties bound to CUDA: every op of <see cref="OpCatalog"/>, forward, first-
/// and second-order, on cuda:0 against the Reference backend on the CPU (float64 within 1e-10,
/// float32 within 1e-5, relative). Without a GPU every case reports skipped with
/// <see cref="CudaBackend.TryCreate"/>'s reason, never passed.
/// </summary>
[SkipGroupWhen(typeof(CudaCrossBackendTests), nameof(Reason))]
public sealed class CudaCrossBackendTests : CrossBackendTests
{
    // The process-wide backend, registered once: tensors of one CUDA backend cannot be used by another.
    private static readonly Lazy<string?> Unavailable = new(() =>
    {
        if (!CudaBackend.TryGetShared(out var backend, out string reason))
        {
            return $"CUDA backend unavailable: {reason}";
        }
        Backends.Register(backend!);
        return null;
    });

    protected override Device Candidate => Device.Cuda(0);

    protected override string? SkipReason => Unavailable.Value;

    /// <summary>Why CUDA cannot be used here (read at discovery by <see cref="SkipGroupWhenAttribute"/>), or null.</summary>
    internal static string? Reason => Unavailable.Value;

    [Fact]
    public void WholeGroup_RunsOnlyWhereItsDeviceExists() => SkippedGroups.Report(GetType(), SkipReason);

    protected override double Float64Tolerance => 1e-10;

    protected override double Float32Tolerance => 1e-5;
}
