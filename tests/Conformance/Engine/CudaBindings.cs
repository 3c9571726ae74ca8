namespace Higher.Conformance.Engine;

/// <summary>The single-op fixtures (forward, first and second derivatives) on the CUDA backend.</summary>
public sealed class OpFixtureTestsOnCuda : OpFixtureTests
{
    protected override Device Device => SharedCuda.Device;

    protected override string? SkipReason => SharedCuda.SkipReason;
}

/// <summary>The model fixtures (MLP losses, optimizer steps, MAML meta-gradients) on the CUDA backend.</summary>
public sealed class ModelFixtureTestsOnCuda : ModelFixtureTests
{
    protected override Device Device => SharedCuda.Device;

    protected override string? SkipReason => SharedCuda.SkipReason;
}

/// <summary>The autograd behaviour tests on the CUDA backend.</summary>
public sealed class AutogradTestsOnCuda : AutogradTests
{
    protected override Device Device => SharedCuda.Device;

    protected override string? SkipReason => SharedCuda.SkipReason;
}

/// <summary>The failure twins on the CUDA backend (index bounds are left to the kernels there).</summary>
public sealed class ErrorTestsOnCuda : ErrorTests
{
    protected override Device Device => SharedCuda.Device;

    protected override string? SkipReason => SharedCuda.SkipReason;
}
