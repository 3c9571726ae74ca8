namespace Higher;

/// <summary>
/// The well-formedness rules of <see cref="ConvGeometry"/> and <see cref="PoolGeometry"/>, in one place:
/// every backend runs them on the host before a convolution or pooling kernel starts (nothing is
/// queued or written first); a bad geometry throws <see cref="ArgumentException"/> naming the call.
/// </summary>
public static class WindowChecks
{
    /// <summary>Throws unless the geometry is a well-formed convolution (sizes ≥ 0, strides, dilations and groups ≥ 1, channels divisible by groups).</summary>
    public static void Validate(string op, in ConvGeometry geometry)
    {
        if (geometry.Batch < 0 || geometry.InChannels < 0 || geometry.InHeight < 0 || geometry.InWidth < 0 || geometry.OutChannels < 0 || geometry.KernelHeight < 0
            || geometry.KernelWidth < 0 || geometry.OutHeight < 0 || geometry.OutWidth < 0)
        {
            throw new ArgumentException($"{op}: negative size in {geometry}.", nameof(geometry));
        }
        if (geometry.Groups < 1 || geometry.StrideHeight < 1 || geometry.StrideWidth < 1 || geometry.DilationHeight < 1 || geometry.DilationWidth < 1)
        {
            throw new ArgumentException($"{op}: groups, strides and dilations must be at least 1 in {geometry}.", nameof(geometry));
        }
        if (geometry.InChannels % geometry.Groups != 0 || geometry.OutChannels % geometry.Groups != 0)
        {
            throw new ArgumentException($"{op}: {geometry.InChannels} input and {geometry.OutChannels} output channels must both be multiples of {geometry.Groups} groups ({geometry}).", nameof(geometry));
        }
        long cols = (long)geometry.InChannels / geometry.Groups * geometry.KernelHeight * geometry.KernelWidth;
        if (cols > int.MaxValue || (long)geometry.OutHeight * geometry.OutWidth > int.MaxValue || (long)geometry.InHeight * geometry.InWidth > int.MaxValue)
        {
            throw new ArgumentException($"{op}: {geometry} is too large for a backend (an axis product above 2^31 - 1).", nameof(geometry));
        }
    }

    /// <summary>
    /// Throws unless the geometry is well formed: sizes ≥ 0, kernel, stride and dilation ≥ 1, padding ≥ 0,
    /// dilation 1 for average pooling, and (for max pooling) every window reaching at least one input element.
    /// </summary>
    public static void Validate(string op, in PoolGeometry geometry, bool average)
    {
        if (geometry.Planes < 0 || geometry.InHeight < 0 || geometry.InWidth < 0 || geometry.OutHeight < 0 || geometry.OutWidth < 0 || geometry.PadTop < 0 || geometry.PadLeft < 0)
        {
            throw new ArgumentException($"{op}: negative size or padding in {geometry}.", nameof(geometry));
        }
        if (geometry.KernelHeight < 1 || geometry.KernelWidth < 1 || geometry.StrideHeight < 1 || geometry.StrideWidth < 1 || geometry.DilationHeight < 1 || geometry.DilationWidth < 1)
        {
            throw new ArgumentException($"{op}: kernel, strides and dilations must be at least 1 in {geometry}.", nameof(geometry));
        }
        if (average && (geometry.DilationHeight != 1 || geometry.DilationWidth != 1))
        {
            throw new ArgumentException($"{op}: average pooling has no dilation, got {geometry}.", nameof(geometry));
        }
        if ((long)geometry.InHeight * geometry.InWidth > int.MaxValue || (long)geometry.OutHeight * geometry.OutWidth > int.MaxValue)
        {
            throw new ArgumentException($"{op}: {geometry} is too large for a backend (an axis product above 2^31 - 1).", nameof(geometry));
        }
        if (!average && geometry.Planes > 0)
        {
            for (int i = 0; i < geometry.OutHeight; i++)
            {
                var (lo, hi) = Taps(i * geometry.StrideHeight - geometry.PadTop, geometry.InHeight, geometry.KernelHeight, geometry.DilationHeight);
                if (lo >= hi)
                {
                    throw new ArgumentException($"{op}: output row {i} of {geometry} covers no input row.", nameof(geometry));
                }
            }
            for (int j = 0; j < geometry.OutWidth; j++)
            {
                var (lo, hi) = Taps(j * geometry.StrideWidth - geometry.PadLeft, geometry.InWidth, geometry.KernelWidth, geometry.DilationWidth);
                if (lo >= hi)
                {
                    throw new ArgumentException($"{op}: output column {j} of {geometry} covers no input column.", nameof(geometry));
                }
            }
        }
    }

    /// <summary>Throws unless the adaptive pool sizes are usable (input ≥ 1 where output ≥ 1).</summary>
    public static void ValidateAdaptive(string op, int planes, int inHeight, int inWidth, int outHeight, int outWidth)
    {
        if (planes < 0 || inHeight < 0 || inWidth < 0 || outHeight < 0 || outWidth < 0)
        {
            throw new ArgumentException($"{op}: negative size in planes {planes}, input {inHeight}x{inWidth}, output {outHeight}x{outWidth}.");
        }
        if ((outHeight > 0 && inHeight == 0) || (outWidth > 0 && inWidth == 0))
        {
            throw new ArgumentException($"{op}: an empty {inHeight}x{inWidth} input cannot be pooled to {outHeight}x{outWidth}.");
        }
        if ((long)inHeight * inWidth > int.MaxValue || (long)outHeight * outWidth > int.MaxValue)
        {
            throw new ArgumentException($"{op}: {inHeight}x{inWidth} to {outHeight}x{outWidth} is too large for a backend (an axis product above 2^31 - 1).");
        }
    }

    /// <summary>The taps [lo, hi) of a window starting at <paramref name="start"/> with <paramref name="k"/> taps <paramref name="d"/> apart that fall in [0, size).</summary>
    public static (int Lo, int Hi) Taps(int start, int size, int k, int d)
    {
        int lo = start >= 0 ? 0 : (-start + d - 1) / d;
        int hi = size - start <= 0 ? 0 : Math.Min(k, (size - start + d - 1) / d);
        return (Math.Min(lo, k), hi);
    }
}
