namespace Higher.Nn;

/// <summary>
/// The task-batched forms of the layers (<see cref="Binding.Tasks"/> = T &gt; 0): weights [T, ...] on
/// inputs [T, B, ...], each a composition of existing differentiable primitives: batched GEMM for
/// the linear maps, grouped convolution with the tasks folded into the groups, batch norm over the
/// tasks folded into the channels. Task t's output depends on task t's weights and inputs only.
/// </summary>
internal static class TaskBatch
{
    /// <summary>Throws unless <paramref name="input"/> has the task dimension T first, naming the layer and the form it expects.</summary>
    public static void CheckTasks(string layer, Tensor input, int tasks, string expected)
    {
        ArgumentNullException.ThrowIfNull(input);
        if (input.Rank == 0 || input.Shape[0] != tasks)
        {
            throw new ArgumentException(
                $"{layer}, task-batched over {tasks} tasks, expects input {expected} with the task dimension first; got {input.Describe()}.", nameof(input));
        }
    }

    /// <summary>
    /// y[t] = x[t]·W[t]ᵀ + b[t] for x [T, ..., in], W [T, out, in], b [T, out]: one batched GEMM
    /// (the transpose a GEMM flag) over the tasks.
    /// </summary>
    public static Tensor Linear(string layer, Tensor x, Tensor weight, Tensor? bias)
    {
        int tasks = weight.Shape[0], outF = weight.Shape[1], inF = weight.Shape[2];
        CheckTasks(layer, x, tasks, $"[T={tasks}, ..., {inF}]");
        Tensor.CheckSameDeviceAndDType(layer, x, weight);
        if (x.Rank < 2 || x.Shape[-1] != inF)
        {
            throw new ArgumentException($"{layer}, task-batched over {tasks} tasks, expects input [T={tasks}, ..., {inF}]; got {x.Describe()}: the last dimension must equal the weight's {inF} input features.", nameof(x));
        }
        long rows = 1;
        for (int i = 1; i < x.Rank - 1; i++)
        {
            rows *= x.Shape[i];
        }
        var x3 = x.Rank == 3 ? x : x.Reshape(tasks, checked((int)rows), inF);
        var y = Tensor.MatMulT(x3, weight, false, true, bias?.Unsqueeze(1));
        if (x.Rank == 3)
        {
            return y;
        }
        var dims = x.Shape.ToArray();
        dims[^1] = outF;
        return y.Reshape(dims);
    }

    /// <summary>
    /// A convolution with per-task weights: x [T, B, C, H, W] (or [T, C, H, W], one sample per task)
    /// becomes [B, T·C, H, W], the weights [T·O, ...], and one convolution with T·groups groups computes
    /// every task at once; the output is unfolded back to [T, B, O, OH, OW].
    /// </summary>
    public static Tensor Convolution(string layer, Tensor x, Tensor weight, Tensor? bias, int groups, int inChannels,
        Func<Tensor, Tensor, Tensor?, int, Tensor> convolve)
    {
        int tasks = weight.Shape[0];
        CheckTasks(layer, x, tasks, $"[T={tasks}, B, {inChannels}, H, W] (or [T={tasks}, {inChannels}, H, W])");
        if (x.Rank is not (4 or 5) || x.Shape[x.Rank - 3] != inChannels)
        {
            throw new ArgumentException(
                $"{layer}, task-batched over {tasks} tasks, expects input [T={tasks}, B, {inChannels}, H, W] (or [T={tasks}, {inChannels}, H, W]); got {x.Describe()}.", nameof(x));
        }
        bool single = x.Rank == 4;
        var x5 = single ? x.Unsqueeze(1) : x;
        int batch = x5.Shape[1], h = x5.Shape[3], w = x5.Shape[4];
        // With one sample per task the task and channel dimensions are already adjacent: no copy.
        var folded = (batch == 1 ? x5 : x5.Transpose(0, 1)).Reshape(batch, tasks * inChannels, h, w);
        var wDims = weight.Shape.ToArray();
        var foldedWeight = weight.Reshape([tasks * wDims[1], .. wDims[2..]]);
        var foldedBias = bias?.Reshape(-1);
        var y = convolve(folded, foldedWeight, foldedBias, groups * tasks);
        int outChannels = y.Shape[1] / tasks;
        var unfolded = y.Reshape(batch, tasks, outChannels, y.Shape[2], y.Shape[3]);
        unfolded = batch == 1 ? unfolded.Reshape(tasks, 1, outChannels, y.Shape[2], y.Shape[3]) : unfolded.Transpose(0, 1);
        return single ? unfolded.Squeeze(1) : unfolded;
    }

    /// <summary>
    /// A per-sample operation on [N, ...] (pooling) applied to task-batched [T, B, ...] of rank
    /// <paramref name="rank"/> + 1 by folding the tasks into the samples; a per-task unbatched input
    /// (rank <paramref name="rank"/>) is already [T, ...] in the operation's batched form.
    /// </summary>
    public static Tensor FoldSamples(string layer, Tensor x, int tasks, int rank, Func<Tensor, Tensor> op)
    {
        CheckTasks(layer, x, tasks, $"[T={tasks}, B, C, H, W] (or [T={tasks}, C, H, W])");
        if (x.Rank != rank + 1)
        {
            return op(x);
        }
        var dims = x.Shape.ToArray();
        var y = op(x.Reshape([tasks * dims[1], .. dims[2..]]));
        var outDims = y.Shape.ToArray();
        return y.Reshape([tasks, dims[1], .. outDims[1..]]);
    }
}
