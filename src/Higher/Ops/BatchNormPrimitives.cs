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
