using Higher.Distributed.Mpi;
using Higher.Distributed.Nccl;

namespace Higher.Distributed.Tests;

/// <summary>What a user sees when something is wrong: on every rank, the same named failure, and no hang.</summary>
public sealed class FailureTests
{
    [Fact]
    // One mpirun for all: failures named on every rank, then BroadcastState and AllReduceGrads with missing gradients.
    public void OneJob_NamesFailuresOnEveryRank_ThenBroadcastsStateAndReducesMissingGrads()
    {
        if (MpiJob.SkipReason is { } reason)
        {
            Assert.Skip(reason);
        }
        var output = MpiJob.Run("errors", 2);
        for (int r = 0; r < 2; r++)
        {
            string Line(string key) => output[r].Single(l => l.StartsWith(key + " ", StringComparison.Ordinal))[(key.Length + 1)..];

            // Shapes that differ between ranks: both ranks throw, naming both ranks' operands.
            Assert.Equal(
                "DistributedException: AllReduce: the 2 ranks disagree on their operands (every rank must pass the same count, shapes, dtypes and device types, and the same op): " +
                "rank 0: 1 tensor on cpu: float64 [1], Sum; rank 1: 1 tensor on cpu: float64 [2], Sum.", Line("shapes"));
            Assert.Contains("Broadcast: the 2 ranks disagree", Line("dtypes"), StringComparison.Ordinal);
            Assert.Contains("rank 0: 1 tensor on cpu: float32 [3], root 0; rank 1: 1 tensor on cpu: float64 [3], root 0", Line("dtypes"), StringComparison.Ordinal);

            // A collective MPI fails: the call, this rank, MPI's own message.
            Assert.StartsWith($"DistributedException: MPI_Allreduce failed on rank {r} of 2: MPI_ERR_COUNT", Line("mpi"), StringComparison.Ordinal);

            // CUDA tensors where there is no NCCL: refused on every rank with the reason and the way out.
            if (NcclLibrary.TryGet(out _) is null)
            {
                Assert.StartsWith("DistributedException: AllReduce: the tensors are on cuda:0, which needs NCCL on every rank; rank(s) 0, 1 of 2 cannot use it", Line("cuda"), StringComparison.Ordinal);
                Assert.Contains("NCCL not found (tried libnccl.so.2", Line("cuda"), StringComparison.Ordinal);
                Assert.Contains("tensor.To(Device.Cpu)", Line("cuda"), StringComparison.Ordinal);
            }
            else
            {
                Assert.StartsWith("DistributedException: ", Line("cuda"), StringComparison.Ordinal);
            }

            // A null dereference after MPI_Init is still the runtime's NullReferenceException (Open MPI's signal handlers do not take it).
            Assert.StartsWith("NullReferenceException: ", Line("null"), StringComparison.Ordinal);

            // BroadcastState: rank 1's parameters and buffers (filled with 10 + k) are now rank 0's (k), the int64 counter too.
            Assert.Equal("weight=0,0,0 bias=1,1,1 running_mean=2,2,2 running_var=3,3,3 num_batches_tracked=4", Line("state"));
            // AllReduceGrads: rank 0's gradient of the weight reaches rank 1 (zeros there); the bias has none anywhere and keeps none.
            Assert.Equal("weight=1,2,3 bias=null", Line("grads"));

            // None of it broke the job: [r + 1, 10] summed over ranks 0 and 1.
            Assert.Equal("3 20", Line("after"));
            // Then a barrier, a float32 mean ([r + 1, 10] -> [1.5, 10]), a max ([r, -r] -> [1, 0]) and a scalar sum (0.5 + 1.5).
            Assert.Equal("1.5 10 1 0 2 float32", Line("more"));
        }
    }

    [Fact]
    public void NoMpiLibrary_SaysHowToInstallOpenMpi()
    {
        var library = MpiLibrary.TryLoad(["libmpi-higher-test-missing.so.99"], out string reason);
        Assert.Null(library);
        Assert.StartsWith("No MPI library found (tried libmpi-higher-test-missing.so.99", reason, StringComparison.Ordinal);
        Assert.Contains("apt-get install openmpi-bin libopenmpi-dev", reason, StringComparison.Ordinal);
        Assert.Contains(MpiLibrary.PathVariable, reason, StringComparison.Ordinal);
    }

    [Fact]
    public void AnotherMpi_IsRefusedByName()
    {
        string reason = MpiLibrary.NotOpenMpi("libmpi.so.12", "MPICH Version:\t4.0\nMPICH Release date: ...");
        Assert.StartsWith("libmpi.so.12 is not Open MPI (MPICH Version:\t4.0)", reason, StringComparison.Ordinal);
        Assert.Contains("integer handles", reason, StringComparison.Ordinal);
        Assert.Contains("apt-get install openmpi-bin libopenmpi-dev", reason, StringComparison.Ordinal);
    }

    [Fact]
    public void OpenMpiOnThisMachine_IsFoundWhenInstalled()
    {
        if (MpiJob.SkipReason is { } reason)
        {
            Assert.Skip(reason);
        }
        var library = MpiLibrary.TryGet(out string why);
        Assert.True(library is not null, why);
        Assert.Contains("Open MPI", library.Version, StringComparison.Ordinal);
    }

    [Fact]
    public void NoNccl_IsReportedWithTheSonamesTried()
    {
        var library = NcclLibrary.TryLoad(["libnccl-higher-test-missing.so.9"], out string reason);
        Assert.Null(library);
        Assert.Equal("NCCL not found (tried libnccl-higher-test-missing.so.9): install NCCL 2 (libnccl2) or set HIGHER_NCCL_LIBRARY", reason);
        Assert.Equal(["custom.so", "libnccl.so.2", "libnccl.so"], NcclLibrary.Candidates("custom.so"));
        Assert.Equal(["libmpi.so.40", "libmpi.so.20", "libmpi.so.12", "libmpi.so"], MpiLibrary.Candidates(null));
    }

    [Fact]
    public void Metadata_TellsApartWhatRanksMustAgreeOn()
    {
        long[] Meta(params Tensor[] t) => Communicator.Metadata(t, 0);
        var baseline = Meta(Tensor.Zeros([2, 3], DType.Float64), Tensor.Zeros([4], DType.Float64));
        Assert.Equal(baseline, Meta(Tensor.Ones([2, 3], DType.Float64), Tensor.Ones([4], DType.Float64)));
        Assert.NotEqual(baseline, Meta(Tensor.Zeros([3, 2], DType.Float64), Tensor.Zeros([4], DType.Float64)));
        Assert.NotEqual(baseline, Meta(Tensor.Zeros([6], DType.Float64), Tensor.Zeros([4], DType.Float64)));
        Assert.NotEqual(baseline, Meta(Tensor.Zeros([2, 3], DType.Float32), Tensor.Zeros([4], DType.Float64)));
        Assert.NotEqual(baseline, Meta(Tensor.Zeros([4], DType.Float64), Tensor.Zeros([2, 3], DType.Float64)));
        Assert.NotEqual(baseline, Meta(Tensor.Zeros([2, 3], DType.Float64)));
        Assert.NotEqual(baseline, Communicator.Metadata([Tensor.Zeros([2, 3], DType.Float64), Tensor.Zeros([4], DType.Float64)], 1));
        Assert.Equal("2 tensors on cpu: float64 [2, 3], float32 [4]", Communicator.Describe([Tensor.Zeros([2, 3], DType.Float64), Tensor.Zeros([4])]));
    }
}
