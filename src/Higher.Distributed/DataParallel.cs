using Higher.Nn;

namespace Higher.Distributed;

/// <summary>
/// Data-parallel meta-training over the ranks of a <see cref="Communicator"/>: every rank holds the same
/// model, runs the inner loops of its own tasks of the meta-batch (<see cref="Communicator.Split"/>), and
/// takes the same meta-step on the summed meta-gradient.
/// <code>
/// using var world = Communicator.Initialize();
/// DataParallel.BroadcastState(world, model);            // rank 0's weights everywhere
/// var mine = world.Split(metaBatch);                      // contiguous, uneven splits included
/// metaOpt.ZeroGrad();
/// for (int t = mine.Start; t &lt; mine.End; t++) { /* inner loop of task t; (queryLoss / metaBatch).Backward() */ }
/// DataParallel.AllReduceGrads(world, model);             // Σ over the ranks into every parameter's Grad
/// metaOpt.Step();                                        // the same step on every rank
/// </code>
/// The sum over ranks of each rank's sum over its tasks is the meta-batch's sum grouped by rank, so the
/// meta-gradient matches a single process's to rounding (a few ulps in float64), and every rank gets the
/// same bits from the allreduce, so the ranks' parameters stay identical step after step.
/// </summary>
public static class DataParallel
{
    /// <summary>
    /// Copies the parameters and buffers of <paramref name="model"/> on rank <paramref name="root"/> into the
    /// same model on every other rank, in place (one broadcast). Every rank's model must have the same
    /// parameters and buffers (names in the same order, shapes, dtypes); ranks that differ all throw, naming each.
    /// </summary>
    public static void BroadcastState(Communicator world, Module model, int root = 0)
    {
        ArgumentNullException.ThrowIfNull(world);
        ArgumentNullException.ThrowIfNull(model);
        var tensors = new List<Tensor>();
        foreach (var (_, parameter) in model.NamedParameterHandles())
        {
            tensors.Add(parameter.Data);
        }
        foreach (var (_, buffer) in model.NamedBufferHandles())
        {
            if (buffer.Data is { } data)
            {
                tensors.Add(data);
            }
        }
        world.Broadcast(tensors, root);
    }

    /// <summary>
    /// Replaces the <see cref="Tensor.Grad"/> of every parameter of <paramref name="model"/> that requires
    /// grad by the reduction over the ranks (<see cref="CollectiveOp.Sum"/> by default: use it when each rank's
    /// loss was already divided by the whole meta-batch size; <see cref="CollectiveOp.Mean"/> divides the sum by
    /// the number of ranks). A parameter whose Grad is null on some ranks (a rank with no task) counts as zeros
    /// there; one whose Grad is null on every rank keeps a null Grad, as in a single process. The new Grads
    /// are detached tensors on the parameters' devices.
    /// </summary>
    public static void AllReduceGrads(Communicator world, Module model, CollectiveOp op = CollectiveOp.Sum) =>
        _ = Reduce(world, model, op, 0, "AllReduceGrads");

    /// <summary>
    /// <see cref="AllReduceGrads(Communicator, Module, CollectiveOp)"/>, reducing <paramref name="value"/> (this
    /// rank's share of the meta-batch loss, say, for logging) in the same collective: returns its reduction
    /// over the ranks, computed in the parameters' dtype (one round of messages saved per meta-step).
    /// </summary>
    public static double AllReduceGrads(Communicator world, Module model, double value, CollectiveOp op = CollectiveOp.Sum) =>
        Reduce(world, model, op, value, "AllReduceGrads");

    private static double Reduce(Communicator world, Module model, CollectiveOp op, double value, string call)
    {
        ArgumentNullException.ThrowIfNull(world);
        ArgumentNullException.ThrowIfNull(model);
        var parameters = model.NamedParameterHandles().Select(p => p.Parameter).Where(p => p.RequiresGrad).ToArray();
        if (parameters.Length == 0)
        {
            throw new ArgumentException($"{call}: the {model.GetType().Name} has no parameter that requires grad.", nameof(model));
        }
        // One collective: every parameter's gradient (zeros where this rank has none), then a 0/1 flag per
        // parameter in the same dtype, whose sum says whether any rank had a gradient for it, then the value.
        var tensors = new List<Tensor>(parameters.Length + 1);
        var flags = new double[parameters.Length + 1];
        for (int i = 0; i < parameters.Length; i++)
        {
            var p = parameters[i];
            flags[i] = p.Grad is null ? 0 : 1;
            tensors.Add(p.Grad ?? Tensor.ZerosLike(p.Data));
        }
        var flagDType = parameters[0].Data.DType;
        flags[^1] = value;
        tensors.Add(Tensor.FromArray(flags, null, parameters[0].Data.Device).To(flagDType));
        var sums = world.AllReduce(tensors, op);
        var any = sums[^1].ToDoubleArray();
        for (int i = 0; i < parameters.Length; i++)
        {
            if (any[i] != 0)
            {
                parameters[i].Grad = sums[i];
            }
        }
        return any[^1];
    }
}
