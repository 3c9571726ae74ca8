namespace Higher;

/// <summary>How a loss reduces its per-element values.</summary>
public enum Reduction
{
    /// <summary>Return the per-element losses.</summary>
    None,
    /// <summary>Average (over non-ignored targets where applicable).</summary>
    Mean,
    /// <summary>Sum.</summary>
    Sum,
}

/// <summary>
/// Losses and activations as in torch.nn.functional, all compositions of differentiable
/// primitives, so their derivatives of every order come from the primitives'.
/// </summary>
public static class F
{
    /// <summary>Mean (or sum) of (input - target)².</summary>
    public static Tensor MseLoss(Tensor input, Tensor target, Reduction reduction = Reduction.Mean)
    {
        CheckPair("MseLoss", "input", input, target);
        var d = input - target;
        // Sum and mean are one node (the bits of (d·d).Sum() and its mean, a shorter backward).
        return reduction switch
        {
            Reduction.None => d * d,
            Reduction.Sum => d.ScaledSumOfSquares(1),
            _ => d.ScaledSumOfSquares(d.Numel == 0 ? double.NaN : 1.0 / d.Numel),
        };
    }

    /// <summary>Mean absolute error.</summary>
    public static Tensor L1Loss(Tensor input, Tensor target, Reduction reduction = Reduction.Mean)
    {
        CheckPair("L1Loss", "input", input, target);
        return Reduce((input - target).Abs(), reduction);
    }

    /// <summary>
    /// The checks of an elementwise loss, made before any op runs so that the message names the
    /// loss: same shape, floating-point, same dtype and device.
    /// </summary>
    private static void CheckPair(string loss, string inputName, Tensor input, Tensor target)
    {
        ArgumentNullException.ThrowIfNull(input, inputName);
        ArgumentNullException.ThrowIfNull(target);
        if (input.Shape != target.Shape)
        {
            throw new ArgumentException($"{loss}: {inputName} {input.Shape} and target {target.Shape} must have the same shape.");
        }
        if (!input.DType.IsFloatingPoint() || input.DType != target.DType || input.Device != target.Device)
        {
            throw new ArgumentException(
                $"{loss}: {inputName} ({input.Describe()} on {input.Device}) and target ({target.Describe()} on {target.Device}) must be floating-point tensors of one dtype on one device.");
        }
    }

    private static void CheckScores(string loss, string inputName, Tensor input, Tensor target)
    {
        ArgumentNullException.ThrowIfNull(input, inputName);
        ArgumentNullException.ThrowIfNull(target);
        if (!input.DType.IsFloatingPoint())
        {
            throw new ArgumentException($"{loss}: {inputName} must be floating-point; got {input.Describe()}.");
        }
        if (input.Device != target.Device)
        {
            throw new ArgumentException($"{loss}: {inputName} ({input.Describe()} on {input.Device}) and target ({target.Describe()} on {target.Device}) must be on one device.");
        }
    }

    private static Tensor Reduce(Tensor losses, Reduction reduction) => reduction switch
    {
        Reduction.None => losses,
        Reduction.Sum => losses.Sum(),
        _ => losses.Mean(),
    };

    /// <summary>
    /// Negative log-likelihood of int64 class <paramref name="target"/> [N] under log-probabilities
    /// <paramref name="logProbs"/> [N, C]; targets equal to <paramref name="ignoreIndex"/> count for nothing
    /// (the mean divides by the number of other targets).
    /// </summary>
    public static Tensor NllLoss(Tensor logProbs, Tensor target, Reduction reduction = Reduction.Mean, long ignoreIndex = -100)
    {
        CheckScores("NllLoss", "logProbs", logProbs, target);
        var (picked, keep, count) = PickTargets(logProbs, target, ignoreIndex, "NllLoss");
        var losses = Tensor.Where(keep, picked.Neg(), 0);
        return reduction switch
        {
            Reduction.None => losses,
            Reduction.Sum => losses.Sum(),
            _ => losses.Sum() / count,
        };
    }

    private static (Tensor Picked, Tensor Keep, Tensor Count) PickTargets(Tensor logProbs, Tensor target, long ignoreIndex, string op)
    {
        if (logProbs.Rank != 2 || target.Rank != 1 || target.Shape[0] != logProbs.Shape[0])
        {
            throw new ArgumentException($"{op}: expected input [N, C] and target [N]; got input {logProbs.Shape} and target {target.Shape}.");
        }
        if (target.DType != DType.Int64)
        {
            throw new ArgumentException($"{op}: target must hold int64 class indices; got {target.DType.Name()}.");
        }
        var keep = target.Ne(ignoreIndex);
        var safeTarget = Tensor.Where(keep, target, 0);
        int classes = logProbs.Shape[1];
        // Checked here (where it costs no device round-trip) so the message names the loss, not the gather inside it.
        if (safeTarget.TryReadHostInt64(out var classesOf))
        {
            foreach (long t in classesOf)
            {
                if (t < 0 || t >= classes)
                {
                    throw new ArgumentOutOfRangeException(nameof(target), $"{op}: target class {t} is out of range [0, {classes}) for input {logProbs.Shape}.");
                }
            }
        }
        var picked = logProbs.Gather(1, safeTarget.Unsqueeze(1)).Squeeze(1);
        // The count stays a tensor: no host round-trip inside the loss.
        var count = keep.Cast(logProbs.DType).Sum();
        return (picked, keep, count);
    }

    /// <summary>
    /// Cross entropy of logits [N, C] against int64 class targets [N], with optional label
    /// smoothing ε: loss = (1 - ε)·nll + ε·mean over classes of -log p (PyTorch's definition).
    /// </summary>
    public static Tensor CrossEntropy(Tensor logits, Tensor target, Reduction reduction = Reduction.Mean, double labelSmoothing = 0, long ignoreIndex = -100)
    {
        if (labelSmoothing is < 0 or > 1)
        {
            throw new ArgumentOutOfRangeException(nameof(labelSmoothing), labelSmoothing, "Label smoothing must lie in [0, 1].");
        }
        CheckScores("CrossEntropy", "logits", logits, target);
        if (logits.Rank != 2 || target.Rank != 1 || target.Shape[0] != logits.Shape[0])
        {
            throw new ArgumentException($"CrossEntropy: expected logits [N, C] and target [N]; got logits {logits.Shape} and target {target.Shape}.");
        }
        var logp = logits.LogSoftmax(-1);
        var (picked, keep, count) = PickTargets(logp, target, ignoreIndex, "CrossEntropy");
        var losses = picked.Neg();
        if (labelSmoothing > 0)
        {
            var smooth = logp.Mean(1).Neg();
            losses = losses * (1 - labelSmoothing) + smooth * labelSmoothing;
        }
        losses = Tensor.Where(keep, losses, 0);
        return reduction switch
        {
            Reduction.None => losses,
            Reduction.Sum => losses.Sum(),
            _ => losses.Sum() / count,
        };
    }

    /// <summary>Binary cross entropy on logits, stably: softplus(x) - x·y.</summary>
    public static Tensor BinaryCrossEntropyWithLogits(Tensor logits, Tensor target, Reduction reduction = Reduction.Mean)
    {
        CheckPair("BinaryCrossEntropyWithLogits", "logits", logits, target);
        return Reduce(logits.Softplus() - logits * target, reduction);
    }

    /// <summary>Softmax along an axis.</summary>
    public static Tensor Softmax(Tensor x, int axis) => x.Softmax(axis);

    /// <summary>Log-softmax along an axis.</summary>
    public static Tensor LogSoftmax(Tensor x, int axis) => x.LogSoftmax(axis);

    /// <summary>y = x·Wᵀ + b.</summary>
    public static Tensor Linear(Tensor x, Tensor weight, Tensor? bias = null) => Tensor.Linear(x, weight, bias);

    /// <summary>Rectifier.</summary>
    public static Tensor Relu(Tensor x) => x.Relu();

    /// <summary>
    /// Pads the trailing axes of <paramref name="x"/> (torch.nn.functional.pad): <paramref name="pads"/> is
    /// (left, right, top, bottom, ...) from the last axis; see <see cref="Tensor.Pad"/>.
    /// </summary>
    public static Tensor Pad(Tensor x, IReadOnlyList<int> pads, PadMode mode = PadMode.Constant, double value = 0)
    {
        ArgumentNullException.ThrowIfNull(x);
        return x.Pad(pads, mode, value);
    }
}
