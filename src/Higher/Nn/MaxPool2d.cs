namespace Higher.Nn;

/// <summary>
/// 2-D max pooling (torch.nn.MaxPool2d): <see cref="Tensor.MaxPool2d"/> over each channel; the
/// gradient goes to the first maximal element of each window, as in PyTorch. No parameters.
/// </summary>
/// <param name="kernelSize">Window size.</param>
/// <param name="stride">Step between windows (default: the kernel size).</param>
/// <param name="padding">Implicit -∞ padding, at most half the kernel (default 0).</param>
/// <param name="dilation">Spacing between window taps (default 1).</param>
/// <param name="ceilMode">Round the output size up.</param>
public sealed class MaxPool2d(Size2d kernelSize, Size2d? stride = null, Size2d? padding = null, Size2d? dilation = null, bool ceilMode = false) : Module
{
    /// <inheritdoc/>
    internal override bool KeepsNoActivations => true;

    /// <summary>Window size.</summary>
    public Size2d KernelSize { get; } = kernelSize;

    /// <summary>Step between windows.</summary>
    public Size2d Stride { get; } = stride ?? kernelSize;

    /// <summary>Implicit -∞ padding.</summary>
    public Size2d Padding { get; } = padding ?? 0;

    /// <summary>Spacing between window taps.</summary>
    public Size2d Dilation { get; } = dilation ?? 1;

    /// <summary>Whether the output size rounds up.</summary>
    public bool CeilMode { get; } = ceilMode;

    /// <inheritdoc/>
    protected override string ExtraRepr() =>
        $"kernel_size={KernelSize}, stride={Stride}, padding={Padding}, dilation={Dilation}, ceil_mode={Py(CeilMode)}";

    /// <inheritdoc/>
    /// <remarks>Task-batched, [T, B, C, H, W] pools as T·B samples.</remarks>
    public override Tensor Forward(Tensor input) => Binding.Tasks > 0
        ? TaskBatch.FoldSamples("MaxPool2d", input, Binding.Tasks, 4, x => Tensor.MaxPool2d(x, KernelSize, Stride, Padding, Dilation, CeilMode))
        : Tensor.MaxPool2d(input, KernelSize, Stride, Padding, Dilation, CeilMode);
}

/// <summary>2-D average pooling (torch.nn.AvgPool2d): <see cref="Tensor.AvgPool2d"/> over each channel. No parameters.</summary>
/// <param name="kernelSize">Window size.</param>
/// <param name="stride">Step between windows (default: the kernel size).</param>
/// <param name="padding">Implicit zero padding, at most half the kernel (default 0).</param>
/// <param name="ceilMode">Round the output size up.</param>
/// <param name="countIncludePad">Whether padding positions count in the divisor.</param>
/// <param name="divisorOverride">A fixed divisor for every window.</param>
public sealed class AvgPool2d(Size2d kernelSize, Size2d? stride = null, Size2d? padding = null, bool ceilMode = false, bool countIncludePad = true,
    int? divisorOverride = null) : Module
{
    /// <inheritdoc/>
    internal override bool KeepsNoActivations => true;

    /// <summary>Window size.</summary>
    public Size2d KernelSize { get; } = kernelSize;

    /// <summary>Step between windows.</summary>
    public Size2d Stride { get; } = stride ?? kernelSize;

    /// <summary>Implicit zero padding.</summary>
    public Size2d Padding { get; } = padding ?? 0;

    /// <summary>Whether the output size rounds up.</summary>
    public bool CeilMode { get; } = ceilMode;

    /// <summary>Whether padding positions count in the divisor.</summary>
    public bool CountIncludePad { get; } = countIncludePad;

    /// <summary>A fixed divisor for every window, or null.</summary>
    public int? DivisorOverride { get; } = divisorOverride;

    /// <inheritdoc/>
    /// <remarks>Task-batched, [T, B, C, H, W] pools as T·B samples.</remarks>
    public override Tensor Forward(Tensor input) => Binding.Tasks > 0
        ? TaskBatch.FoldSamples("AvgPool2d", input, Binding.Tasks, 4, x => Tensor.AvgPool2d(x, KernelSize, Stride, Padding, CeilMode, CountIncludePad, DivisorOverride))
        : Tensor.AvgPool2d(input, KernelSize, Stride, Padding, CeilMode, CountIncludePad, DivisorOverride);
}

/// <summary>
/// Adaptive average pooling (torch.nn.AdaptiveAvgPool2d): <see cref="Tensor.AdaptiveAvgPool2d"/> of each
/// channel to a fixed output size, whatever the input's. No parameters.
/// </summary>
/// <param name="outputSize">(OH, OW), or one size for both.</param>
public sealed class AdaptiveAvgPool2d(Size2d outputSize) : Module
{
    /// <inheritdoc/>
    internal override bool KeepsNoActivations => true;

    /// <summary>(OH, OW).</summary>
    public Size2d OutputSize { get; } = outputSize;

    /// <inheritdoc/>
    /// <remarks>Task-batched, [T, B, C, H, W] pools as T·B samples.</remarks>
    public override Tensor Forward(Tensor input) => Binding.Tasks > 0
        ? TaskBatch.FoldSamples("AdaptiveAvgPool2d", input, Binding.Tasks, 4, x => Tensor.AdaptiveAvgPool2d(x, OutputSize))
        : Tensor.AdaptiveAvgPool2d(input, OutputSize);
}
