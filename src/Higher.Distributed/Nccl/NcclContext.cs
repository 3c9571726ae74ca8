using Higher.Cuda;

namespace Higher.Distributed.Nccl;

/// <summary>
/// One NCCL communicator over the job's ranks for one CUDA device, bootstrapped through MPI: the ranks
/// first agree that every one of them has NCCL (else all refuse, naming the ranks without it), then rank
/// 0's ncclGetUniqueId is broadcast and each rank joins with ncclCommInitRank. Collectives run on a
/// stream of its own: the tensors' backend is synchronized first (its stream is private to it), the NCCL
/// calls are queued in one group, and the stream is synchronized before the results are returned, so
/// the data never leaves device memory and the backend sees finished results.
/// </summary>
internal sealed unsafe class NcclContext : IDisposable
{
    private readonly NcclLibrary _nccl;
    private readonly Communicator _world;
    private readonly int _device;
    private readonly CudaStreamHandle _stream;
    private nint _comm;

    private NcclContext(NcclLibrary nccl, Communicator world, int device, CudaStreamHandle stream, nint comm)
    {
        _nccl = nccl;
        _world = world;
        _device = device;
        _stream = stream;
        _comm = comm;
    }

    /// <summary>Joins the NCCL communicator of CUDA device <paramref name="device"/>; every rank calls it in the same collective.</summary>
    public static NcclContext Create(Communicator world, string call, int device)
    {
        var nccl = NcclLibrary.TryGet(out string reason);
        string cudaReason = "";
        bool cuda = nccl is not null && CudaBackend.TryGetShared(out _, out cudaReason, device);
        var ready = world.AllGather(nccl is not null && cuda ? 1 : 0, call);
        if (ready.Any(r => r == 0))
        {
            string local = nccl is null ? reason : !cuda ? $"CUDA device {device} is unusable: {cudaReason}" : "ready";
            var missing = string.Join(", ", ready.Select((r, i) => (r, i)).Where(x => x.r == 0).Select(x => x.i));
            throw new DistributedException(
                $"{call}: the tensors are on cuda:{device}, which needs NCCL on every rank; rank(s) {missing} of {world.Size} cannot use it " +
                $"(this rank, {world.Rank}: {local}). Move the tensors to the CPU (tensor.To(Device.Cpu)) for the collective, or install NCCL (libnccl2).")
            {
                Call = call,
            };
        }
        var id = default(NcclUniqueId);
        if (world.Rank == 0)
        {
            Check(nccl!, nccl!.GetUniqueId(&id), "ncclGetUniqueId", world.Rank, world.Size);
        }
        world.BroadcastBytes(new Span<byte>(&id, NcclLibrary.UniqueIdBytes), 0, call);
        CudaContext.MakeCurrent(device);
        CudaStreamHandle? stream = null;
        try
        {
            var status = CudaNative.cudaStreamCreateWithFlags(out stream, CudaNative.StreamNonBlocking);
            if (status != CudaError.Success)
            {
                throw new DistributedException($"{call}: cudaStreamCreateWithFlags failed on rank {world.Rank} of {world.Size}: {status}") { Call = "cudaStreamCreateWithFlags", ErrorCode = (int)status };
            }
            stream.DeviceIndex = device;
            nint comm = 0;
            Check(nccl!, nccl!.CommInitRank(&comm, world.Size, id, world.Rank), "ncclCommInitRank", world.Rank, world.Size);
            return new NcclContext(nccl, world, device, stream, comm);
        }
        catch
        {
            stream?.Dispose();
            throw;
        }
    }

    /// <summary>Sum (mean, max, min) over the ranks into new tensors on the device; the inputs unchanged.</summary>
    public IReadOnlyList<Tensor> AllReduce(IReadOnlyList<Tensor> inputs, CollectiveOp op)
    {
        var outputs = inputs.Select(Tensor.ZerosLike).ToArray();
        SynchronizeBackends(inputs);
        SynchronizeBackends(outputs);
        int ncclOp = op switch
        {
            CollectiveOp.Sum or CollectiveOp.Mean => NcclLibrary.OpSum,
            CollectiveOp.Max => NcclLibrary.OpMax,
            CollectiveOp.Min => NcclLibrary.OpMin,
            _ => throw new ArgumentOutOfRangeException(nameof(op), op, "Unknown CollectiveOp."),
        };
        CudaContext.MakeCurrent(_device);
        Check(_nccl, _nccl.GroupStart(), "ncclGroupStart", _world.Rank, _world.Size);
        int status = NcclLibrary.Success;
        for (int i = 0; i < inputs.Count && status == NcclLibrary.Success; i++)
        {
            int type = inputs[i].DType == DType.Float64 ? NcclLibrary.Float64 : NcclLibrary.Float32;
            status = _nccl.AllReduce(Pointer(inputs[i], "AllReduce"), Pointer(outputs[i], "AllReduce"), (nuint)inputs[i].Numel, type, ncclOp, _comm, _stream.DangerousGetHandle());
        }
        int end = _nccl.GroupEnd();
        Check(_nccl, status, "ncclAllReduce", _world.Rank, _world.Size);
        Check(_nccl, end, "ncclGroupEnd", _world.Rank, _world.Size);
        SynchronizeStream("ncclAllReduce");
        if (op != CollectiveOp.Mean)
        {
            return outputs;
        }
        using (Autograd.NoGrad())
        {
            return outputs.Select(o => o / _world.Size).ToArray();
        }
    }

    /// <summary>Root's tensors copied into every rank's, in place (through a device buffer, then CopyFrom).</summary>
    public void Broadcast(IReadOnlyList<Tensor> tensors, int root)
    {
        var received = _world.Rank == root ? tensors.ToArray() : tensors.Select(Tensor.ZerosLike).ToArray();
        SynchronizeBackends(received);
        SynchronizeBackends(tensors);
        CudaContext.MakeCurrent(_device);
        Check(_nccl, _nccl.GroupStart(), "ncclGroupStart", _world.Rank, _world.Size);
        int status = NcclLibrary.Success;
        for (int i = 0; i < tensors.Count && status == NcclLibrary.Success; i++)
        {
            long bytes = tensors[i].Numel * tensors[i].DType.SizeOf();
            status = _nccl.Broadcast(Pointer(tensors[i], "Broadcast"), Pointer(received[i], "Broadcast"), (nuint)bytes, NcclLibrary.Uint8, root, _comm, _stream.DangerousGetHandle());
        }
        int end = _nccl.GroupEnd();
        Check(_nccl, status, "ncclBroadcast", _world.Rank, _world.Size);
        Check(_nccl, end, "ncclGroupEnd", _world.Rank, _world.Size);
        SynchronizeStream("ncclBroadcast");
        if (_world.Rank == root)
        {
            return;
        }
        using (Autograd.NoGrad())
        {
            for (int i = 0; i < tensors.Count; i++)
            {
                tensors[i].CopyFrom(received[i]);
            }
        }
    }

    public void Dispose()
    {
        if (_comm != 0)
        {
            _ = _nccl.CommDestroy(_comm);
            _comm = 0;
        }
        _stream.Dispose();
    }

    private static nint Pointer(Tensor t, string call) => t.Storage is CudaStorage cuda
        ? cuda.Pointer
        : throw new DistributedException($"{call}: the {t.DType.Name()} {t.Shape} tensor on {t.Device} is held by a {t.Storage.GetType().Name}, not Higher.Cuda's CudaStorage; NCCL needs its device address.") { Call = call };

    private static void SynchronizeBackends(IEnumerable<Tensor> tensors)
    {
        foreach (var backend in tensors.Select(t => t.Backend).Distinct())
        {
            var inner = backend is CheckedBackend checkedBackend ? checkedBackend.Inner : backend;
            if (inner is CudaBackend cuda)
            {
                cuda.Synchronize();
            }
        }
    }

    private void SynchronizeStream(string call)
    {
        var status = CudaNative.cudaStreamSynchronize(_stream);
        if (status != CudaError.Success)
        {
            throw new DistributedException($"{call}: cudaStreamSynchronize after it failed on rank {_world.Rank} of {_world.Size}: {status}") { Call = "cudaStreamSynchronize", ErrorCode = (int)status };
        }
    }

    private static void Check(NcclLibrary nccl, int result, string ncclCall, int rank, int size)
    {
        if (result != NcclLibrary.Success)
        {
            throw new DistributedException($"{ncclCall} failed on rank {rank} of {size}: {nccl.Describe(result)} (ncclResult_t {result})") { Call = ncclCall, ErrorCode = result };
        }
    }
}
