namespace Higher;

public sealed partial class Tensor
{
    /// <summary>
    /// Batch normalization over the channel axis 1 of x [N, C, *] (torch.nn.functional.batch_norm):
    /// y = (x - μ)/√(σ² + eps)·γ + β per channel. With <paramref name="training"/> true, μ and σ² are
    /// the batch mean and biased variance over every axis but 1 (the gradient flows through them);
    /// otherwise they are <paramref name="runningMean"/> and <paramref name="runningVar"/>, constants.
    /// Unlike torch's functional form this never writes the running statistics: the
    /// <see cref="Nn.BatchNorm2d"/> layer assigns updated copies through its buffers.
    /// In training, one primitive (<see cref="IBackend.BatchNorm"/>) whose input and weight gradients are
    /// primitives too, with derivatives of every order (see the rows in Tape/Derivatives.cs); in evaluation,
    /// a per-channel affine map of differentiable ops.
    /// </summary>
    /// <param name="input">x: [N, C] or [N, C, ...].</param>
    /// <param name="runningMean">μ for evaluation, [C]; may be null when <paramref name="training"/> is true.</param>
    /// <param name="runningVar">σ² for evaluation, [C]; may be null when <paramref name="training"/> is true.</param>
    /// <param name="weight">γ [C], or null for 1.</param>
    /// <param name="bias">β [C], or null for 0.</param>
    /// <param name="training">Normalize with the batch's statistics.</param>
    /// <param name="eps">Added to the variance.</param>
    public static Tensor BatchNorm(Tensor input, Tensor? runningMean, Tensor? runningVar, Tensor? weight = null, Tensor? bias = null,
        bool training = false, double eps = 1e-5) =>
        BatchNorm(input, runningMean, runningVar, weight, bias, training, eps, out _, out _);

    /// <summary>
    /// <see cref="BatchNorm(Tensor, Tensor?, Tensor?, Tensor?, Tensor?, bool, double)"/>, also returning
    /// (in training) the batch mean and biased variance per channel, [C], for a layer's running statistics.
    /// </summary>
    internal static Tensor BatchNorm(Tensor input, Tensor? runningMean, Tensor? runningVar, Tensor? weight, Tensor? bias,
        bool training, double eps, out Tensor? batchMean, out Tensor? batchVar)
    {
        ArgumentNullException.ThrowIfNull(input);
        input.RequireFloat("BatchNorm");
        if (input.Rank < 2)
        {
            throw new ArgumentException($"BatchNorm: input {input.Describe()} (x) must be [N, C] or [N, C, ...].");
        }
        int c = input.Shape.Dims[1];
        CheckChannelVector(input, runningMean, "running mean");
        CheckChannelVector(input, runningVar, "running variance");
        CheckChannelVector(input, weight, "weight");
        CheckChannelVector(input, bias, "bias");
        if (training)
        {
            if (input.Numel / Math.Max(c, 1) <= 1)
            {
                throw new ArgumentException($"BatchNorm: expected more than 1 value per channel when training; got input {input.Describe()} (x).");
            }
            // One primitive (statistics and output in one kernel; its gradients are primitives too).
            int n = input.Shape.Dims[0];
            var geometry = new NormGeometry(n, c, checked((int)(input.Numel / ((long)n * c))), eps);
            var w = weight ?? FullOn(input.Backend, input.DType, new Shape(c), 1);
            var b = bias ?? ZerosOn(input.Backend, input.DType, new Shape(c));
            var y = BatchNormPrimitive(input, w, b, geometry, out var mean, out var variance);
            batchMean = mean;
            batchVar = variance;
            return y;
        }
        if (runningMean is null || runningVar is null)
        {
            throw new ArgumentException($"BatchNorm: evaluation mode (training false) needs the running mean and variance for input {input.Describe()} (x).");
        }
        // Evaluation: y = x·α + β with per-channel α = γ/√(σ² + eps) and β = b - μ·α (PyTorch's kernel).
        var statShape = new int[input.Rank];
        Array.Fill(statShape, 1);
        statShape[1] = c;
        var mu = runningMean.Reshape(statShape);
        var alpha = (runningVar.Reshape(statShape) + eps).Sqrt().Reciprocal();
        if (weight is not null)
        {
            alpha *= weight.Reshape(statShape);
        }
        var beta = bias is null ? -(mu * alpha) : bias.Reshape(statShape) - (mu * alpha);
        batchMean = null;
        batchVar = null;
        return (input * alpha) + beta;
    }

    private static void CheckChannelVector(Tensor input, Tensor? v, string what)
    {
        if (v is null)
        {
            return;
        }
        int c = input.Shape.Dims[1];
        if (v.Rank != 1 || v.Shape.Dims[0] != c)
        {
            throw new ArgumentException($"BatchNorm: {what} {v.Describe()} must be 1-D with {c} elements, one per channel of input {input.Describe()} (x).");
        }
        if (v.DType != input.DType || v.Device != input.Device)
        {
            throw new ArgumentException($"BatchNorm: {what} {v.Describe()} on {v.Device} must have the dtype and device of input {input.Describe()} on {input.Device} (x).");
        }
    }
}
