namespace Higher.Optim;

/// <summary>Gradient clipping as torch.nn.utils.clip_grad_norm_ and clip_grad_value_ (gradients change in place).</summary>
public static class GradClipping
{
    /// <summary>
    /// Scales the gradients of <paramref name="parameters"/> so that their joint
    /// <paramref name="normType"/>-norm (the norm of the per-tensor norms; ∞: the largest |g|) is at
    /// most <paramref name="maxNorm"/>: every gradient is multiplied by
    /// min(1, maxNorm/(total + 10⁻⁶)). Parameters without a gradient are skipped.
    /// </summary>
    /// <returns>The total norm before clipping, as a 0-d tensor on the gradients' device (0 when there are no gradients).</returns>
    /// <exception cref="ArgumentOutOfRangeException">The norm type is not positive.</exception>
    /// <exception cref="InvalidOperationException"><paramref name="errorIfNonfinite"/> is set and the total norm is NaN or infinite.</exception>
    public static Tensor ClipGradNorm(IEnumerable<Tensor> parameters, double maxNorm, double normType = 2, bool errorIfNonfinite = false)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        if (!(normType > 0))
        {
            throw new ArgumentOutOfRangeException(nameof(normType), normType, "The norm type must be positive (or infinity).");
        }
        if (!(maxNorm >= 0))
        {
            // A NaN or negative bound would scale every gradient by NaN or flip it, silently.
            throw new ArgumentOutOfRangeException(nameof(maxNorm), maxNorm, "ClipGradNorm: maxNorm must be ≥ 0 (or infinity).");
        }
        var grads = parameters.Select(p => p.Grad).OfType<Tensor>().ToList();
        if (grads.Count == 0)
        {
            return Tensor.Scalar(0);
        }
        using var noGrad = Autograd.NoGrad();
        var first = grads[0];
        Tensor total;
        if (double.IsPositiveInfinity(normType))
        {
            var norms = grads.Select(g => g.Abs().Max().To(first.Device).To(first.DType)).ToList();
            total = norms.Count == 1 ? norms[0] : Tensor.Stack(norms).Max();
        }
        else
        {
            var norms = grads.Select(g => Norm(g, normType).To(first.Device).To(first.DType)).ToList();
            total = Norm(Tensor.Stack(norms), normType);
        }
        if (errorIfNonfinite)
        {
            double value = total.Item();
            if (!double.IsFinite(value))
            {
                throw new InvalidOperationException(
                    $"The total norm of order {normType} of the gradients is {value}, so they cannot be clipped. Pass errorIfNonfinite: false to clip anyway.");
            }
        }
        var coefficient = (maxNorm / (total + 1e-6)).Clamp(max: 1.0);
        // Moved and converted for every gradient before the first is scaled.
        var factors = grads.Select(g => coefficient.To(g.Device).To(g.DType)).ToList();
        for (int i = 0; i < grads.Count; i++)
        {
            grads[i].MulInPlace(factors[i]);
        }
        return total;
    }

    /// <summary>Clamps every gradient of <paramref name="parameters"/> to [-clipValue, clipValue] in place.</summary>
    public static void ClipGradValue(IEnumerable<Tensor> parameters, double clipValue)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        if (!(clipValue >= 0))
        {
            throw new ArgumentOutOfRangeException(nameof(clipValue), clipValue, "ClipGradValue: clipValue must be ≥ 0.");
        }
        using var noGrad = Autograd.NoGrad();
        foreach (var p in parameters)
        {
            if (p.Grad is { } g)
            {
                g.CopyFrom(g.Clamp(-clipValue, clipValue));
            }
        }
    }

    /// <summary>(Σ|x|^p)^(1/p), with the usual forms for p = 1 and 2.</summary>
    private static Tensor Norm(Tensor x, double p) => p switch
    {
        1 => x.Abs().Sum(),
        2 => (x * x).Sum().Sqrt(),
        _ => x.Abs().Pow(p).Sum().Pow(1 / p),
    };
}
