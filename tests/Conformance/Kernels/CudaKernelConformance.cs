using Higher.Tests.Shared;

namespace Higher.Conformance.Kernels;

/// <summary>
/// The kernel conformance suite bound to the CUDA backend (the process-wide one of
/// <see cref="SharedCuda"/>: creating a CUDA context per test would dominate the suite). Where
/// CUDA cannot be used (no driver, no device, libhigher_kernels.so not built) every test reports
/// skipped with <see cref="Cuda.CudaBackend.TryCreate"/>'s reason; none passes without a GPU.
/// </summary>
[SkipGroupWhen(typeof(SharedCuda), nameof(SharedCuda.SkipReason))]
public sealed class CudaKernelConformance : KernelConformance
{
    protected override IBackend Backend => SharedCuda.Backend;

    protected override string? SkipReason => SharedCuda.SkipReason;

    [Fact]
    public void WholeGroup_RunsOnlyWhereItsDeviceExists() => SkippedGroups.Report(GetType(), SkipReason);
}
