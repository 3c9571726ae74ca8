using Higher.Distributed;
using Higher.Nn;
using Higher.Samples.MamlSinusoid;

namespace Higher.Samples;

/// <summary>
/// maml-sine --distributed: one MPI rank's share of each meta-batch. Rank 0's weights are broadcast
/// at the start, each rank adapts its contiguous block of tasks (<see cref="Communicator.Split"/>), and
/// the meta-gradients (each task's query loss is already divided by the whole meta-batch size) are
/// summed over the ranks into every rank's Grad, so all ranks take the same Adam step.
/// </summary>
internal sealed class DistributedShare(Communicator world) : IMetaBatchShare
{
    public void Start(Module model) => DataParallel.BroadcastState(world, model);

    public (int Start, int Count) Tasks(int metaBatch)
    {
        var mine = world.Split(metaBatch);
        return (mine.Start, mine.Count);
    }

    public double Reduce(Module model, int iteration, double localLoss)
    {
        // The meta-gradients and the loss (for the log) in one collective.
        return DataParallel.AllReduceGrads(world, model, localLoss);
    }
}
