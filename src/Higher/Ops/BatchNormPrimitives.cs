using Higher.Tape;

namespace Higher;

public sealed partial class Tensor
{
    /// <summary>
    /// Training batch norm as one primitive (<see cref="IBackend.BatchNorm"/>): y from x, weight and bias
    /// [C], with the batch mean and biased variance [C] (auxiliaries of the node, also handed out for a
    /// layer's running statistics). Saves x and the weight.
    /// </summary>
    internal static Tensor BatchNormPrimitive(Tensor x, Tensor weight, Tensor bias, in NormGeometry geometry, out Tensor mean, out Tensor variance)
    {
        var y = Empty(x.Backend, x.DType, x.Shape);
        mean = Empty(x.Backend, x.DType, new Shape(geometry.Channels));
        variance = Empty(x.Backend, x.DType, new Shape(geometry.Channels));
        x.Backend.BatchNorm(geometry, x.Storage, weight.Storage, bias.Storage, y.Storage, mean.Storage, variance.Storage);
        if (Autograd.ShouldRecord([x, weight, bias]))
        {
            Derivatives.BatchNorm.Record(y, geometry, [x, weight, bias], [mean, variance]);
        }
        return y;
    }

    /// <summary>gx = A(gy, x, w): batch norm's input gradient through its statistics (<see cref="IBackend.BatchNormInputGrad"/>). Saves gy, x and w.</summary>
    internal static Tensor BatchNormInputGradPrimitive(Tensor gradY, Tensor x, Tensor weight, Tensor mean, Tensor variance, in NormGeometry geometry)
    {
        var gx = Empty(x.Backend, x.DType, x.Shape);
        x.Backend.BatchNormInputGrad(geometry, gradY.Storage, x.Storage, mean.Storage, variance.Storage, weight.Storage, gx.Storage);
        if (Autograd.ShouldRecord([gradY, x, weight]))
        {
            Derivatives.BatchNormInputGrad.Record(gx, geometry, [gradY, x, weight], [mean, variance]);
        }
        return gx;
    }

    /// <summary>
    /// (A(gy, x, w), B(gy, x)) from one call (<see cref="IBackend.BatchNormBackward"/>), with the bits of
    /// <see cref="BatchNormInputGradPrimitive"/> and <see cref="BatchNormWeightGradPrimitive"/>, each recorded as
    /// that primitive's own node, and with <paramref name="biasGrad"/> Σ gy per channel as the recorded sum of gy over
    /// every axis but 1 (the bits of <see cref="Sum(int[], bool)"/>, from the kernel's pass over gy). With
    /// <paramref name="gradXSums"/> the kernel also leaves gx's channel sums for the bias gradient taken of it next
    /// (<see cref="RememberChannelSums"/>). With
    /// <paramref name="intoX"/> (a gradient slot's tensor, in a pass that records nothing:
    /// <see cref="Tape.Node.TakeAccumulator"/>) the input gradient is added into it, and it is returned.
    /// </summary>
    internal static (Tensor GradX, Tensor GradWeight, Tensor? GradBias) BatchNormBackwardPrimitive(Tensor gradY, Tensor x, Tensor weight, Tensor mean,
        Tensor variance, in NormGeometry geometry, Tensor? intoX = null, bool biasGrad = false, bool gradXSums = false)
    {
        var gx = Into(intoX, x, geometry) ?? Empty(x.Backend, x.DType, x.Shape);
        var gw = Empty(x.Backend, x.DType, new Shape(geometry.Channels));
        var channels = new Shape(1, geometry.Channels, 1);
        var gySums = biasGrad ? Empty(x.Backend, x.DType, channels) : null;
        var gxSums = gradXSums ? Empty(x.Backend, x.DType, new Shape(geometry.Channels)) : null;
        x.Backend.BatchNormBackward(geometry, gradY.Storage, x.Storage, mean.Storage, variance.Storage, weight.Storage, gx.Storage, gw.Storage, null,
            intoX is null ? NormAccumulate.None : NormAccumulate.GradX, gySums?.Storage, gxSums?.Storage);
        if (gxSums is not null)
        {
            gx.RememberChannelSums(gxSums, geometry.Batch);
        }
        if (Autograd.ShouldRecord([gradY, x, weight]))
        {
            Derivatives.BatchNormInputGrad.Record(gx, geometry, [gradY, x, weight], [mean, variance]);
        }
        if (Autograd.ShouldRecord(gradY, x))
        {
            Derivatives.BatchNormWeightGrad.Record(gw, geometry, [gradY, x], [mean, variance]);
        }
        // Flagged on gradY's own shape (every axis but 1), with no reshape between: a deferred broadcast of its
        // gradient then waits at gradY's node for the other terms (Engine.Defer).
        var db = gySums is null ? null : gradY.SumFlaggedFrom(AllButChannelAxis(gradY.Rank), false, gySums);
        return (gx, gw, db);
    }

    /// <summary>
    /// (A(gy, x, k), k·x̂) in one kernel (<see cref="IBackend.BatchNormBackward"/>, x̂ from the forward's saved
    /// statistics): the derivatives of ⟨k, B(gy, x)⟩ with respect to x and gy. Not recorded and not differentiable:
    /// for a backward that records nothing. Either output may be added into a slot's tensor and returned
    /// (<paramref name="intoX"/>, <paramref name="intoGradY"/>: <see cref="Tape.Node.TakeAccumulator"/>). Where given,
    /// <paramref name="gradYBias"/> (C elements: a channel sum's gradient that waited in gy's slot) is added to k·x̂ per
    /// channel in the kernel, with the bits of the slot's broadcasting add.
    /// </summary>
    internal static (Tensor GradX, Tensor GradGradY) BatchNormWeightGradBackwardRaw(Tensor gradY, Tensor x, Tensor k, Tensor mean, Tensor variance,
        in NormGeometry geometry, Tensor? intoX = null, Tensor? intoGradY = null, Tensor? gradYBias = null)
    {
        var gx = Into(intoX, x, geometry) ?? Empty(x.Backend, x.DType, x.Shape);
        var ggy = Into(intoGradY, x, geometry) ?? Empty(x.Backend, x.DType, x.Shape);
        x.Backend.BatchNormBackward(geometry, gradY.Storage, x.Storage, mean.Storage, variance.Storage, k.Storage, gx.Storage, null, ggy.Storage,
            Flags(intoX, intoGradY), scaledNormalizedBias: gradYBias?.Storage);
        return (gx, ggy);
    }

    /// <summary>
    /// (∂⟨h, A⟩/∂gy = A(h, x, w), ∂⟨h, A⟩/∂x, ∂⟨h, A⟩/∂w) for A = A(gy, x, w) in one kernel
    /// (<see cref="IBackend.BatchNormDoubleBackward"/>). Not recorded and not differentiable: for a backward that
    /// records nothing. Either full-size output may be added into a slot's tensor and returned
    /// (<paramref name="intoGradY"/>, <paramref name="intoX"/>: <see cref="Tape.Node.TakeAccumulator"/>).
    /// </summary>
    internal static (Tensor GradGradY, Tensor GradX, Tensor GradWeight) BatchNormDoubleBackwardRaw(Tensor gradY, Tensor x, Tensor weight, Tensor h,
        Tensor mean, Tensor variance, in NormGeometry geometry, Tensor? intoGradY = null, Tensor? intoX = null)
    {
        var ggy = Into(intoGradY, x, geometry) ?? Empty(x.Backend, x.DType, x.Shape);
        var gx = Into(intoX, x, geometry) ?? Empty(x.Backend, x.DType, x.Shape);
        var gw = Empty(x.Backend, x.DType, new Shape(geometry.Channels));
        x.Backend.BatchNormDoubleBackward(geometry, gradY.Storage, x.Storage, mean.Storage, variance.Storage, weight.Storage, h.Storage, ggy.Storage, gx.Storage,
            gw.Storage, Flags(intoX, intoGradY));
        return (ggy, gx, gw);
    }

    /// <summary>The accumulation flags for a gradient of x and a second full-size output, each added into where given.</summary>
    private static NormAccumulate Flags(Tensor? intoX, Tensor? intoSecond) =>
        (intoX is null ? NormAccumulate.None : NormAccumulate.GradX) | (intoSecond is null ? NormAccumulate.None : NormAccumulate.Second);

    /// <summary>
    /// A slot's tensor a fused batch-norm backward adds into (x's element count and dtype; its version moves, as any
    /// in-place write's does), or null.
    /// </summary>
    private static Tensor? Into(Tensor? acc, Tensor x, in NormGeometry geometry)
    {
        if (acc is null)
        {
            return null;
        }
        if (acc.Numel != geometry.Length || acc.DType != x.DType || acc.Device != x.Device)
        {
            throw new InvalidOperationException($"Internal error: accumulating a batch-norm gradient of {x.Describe()} into {acc.Describe()}.");
        }
        acc.Version.Value++;
        return acc;
    }

    /// <summary>
    /// (∂⟨h, A(gy, x, w)⟩/∂x, ∂⟨h, A(gy, x, w)⟩/∂w) in one kernel (<see cref="IBackend.BatchNormInputGradBackward"/>).
    /// Not recorded and not differentiable: for a backward that records nothing.
    /// </summary>
    internal static (Tensor GradX, Tensor GradWeight) BatchNormInputGradBackwardRaw(Tensor gradY, Tensor x, Tensor weight, Tensor h, Tensor mean, Tensor variance,
        in NormGeometry geometry)
    {
        var gx = Empty(x.Backend, x.DType, x.Shape);
        var gw = Empty(x.Backend, x.DType, new Shape(geometry.Channels));
        x.Backend.BatchNormInputGradBackward(geometry, gradY.Storage, x.Storage, mean.Storage, variance.Storage, weight.Storage, h.Storage, gx.Storage, gw.Storage);
        return (gx, gw);
    }

    /// <summary>gw = B(gy, x) = Σ gy·x̂ per channel (<see cref="IBackend.BatchNormWeightGrad"/>). Saves gy and x.</summary>
    internal static Tensor BatchNormWeightGradPrimitive(Tensor gradY, Tensor x, Tensor mean, Tensor variance, in NormGeometry geometry)
    {
        var gw = Empty(x.Backend, x.DType, new Shape(geometry.Channels));
        x.Backend.BatchNormWeightGrad(geometry, gradY.Storage, x.Storage, mean.Storage, variance.Storage, gw.Storage);
        if (Autograd.ShouldRecord(gradY, x))
        {
            Derivatives.BatchNormWeightGrad.Record(gw, geometry, [gradY, x], [mean, variance]);
        }
        return gw;
    }
}
