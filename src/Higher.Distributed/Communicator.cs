using System.Runtime.InteropServices;
using System.Text;
using Higher.Distributed.Mpi;
using Higher.Distributed.Nccl;

namespace Higher.Distributed;

/// <summary>
/// The processes of an MPI job (MPI_COMM_WORLD) and the collectives on tensors between them: allreduce
/// (sum, mean, max, min) and broadcast of float32/float64 tensors (broadcast takes every dtype), barrier,
/// and scalar allreduce. Start the job with <c>mpirun -np N dotnet app.dll</c>; a process started
/// alone is a job of one rank.
/// <para>
/// CPU tensors are reduced from their host storage (packed into one buffer, so a list of tensors costs one
/// MPI call per dtype); CUDA tensors go through NCCL on device memory, with no host copy, when libnccl is
/// present, and are refused with the reason otherwise. Before each collective the ranks exchange a few
/// numbers describing their operands (count, dtypes, devices, shapes, root or op), so ranks that disagree
/// all throw a <see cref="DistributedException"/> naming each rank's operands instead of exchanging
/// mismatched buffers or hanging. A collective that fails throws, naming the MPI call, the rank and MPI's
/// own message (the communicator uses MPI_ERRORS_RETURN instead of aborting the job).
/// </para>
/// <para>
/// Collectives are blocking and, as in MPI, must be called by every rank in the same order. MPI itself
/// runs one collective at a time per communicator: calls from several threads of one rank are serialized.
/// </para>
/// </summary>
public sealed unsafe class Communicator : IDisposable
{
    private static readonly Lock WorldGate = new();
    private static Communicator? s_world;

    private readonly MpiLibrary _mpi;
    private readonly Lock _gate = new();
    private readonly bool _initializedHere;
    private readonly Dictionary<int, NcclContext> _nccl = [];
    private bool _disposed;

    private Communicator(MpiLibrary mpi, bool initializedHere, int threadLevel)
    {
        _mpi = mpi;
        _initializedHere = initializedHere;
        ThreadLevel = threadLevel;
        int rank, size;
        Check(_mpi.CommRank(_mpi.CommWorld, &rank), "MPI_Comm_rank", checkedRank: -1);
        Check(_mpi.CommSize(_mpi.CommWorld, &size), "MPI_Comm_size", checkedRank: rank);
        Rank = rank;
        Size = size;
        Check(_mpi.CommSetErrhandler(_mpi.CommWorld, _mpi.ErrorsReturn), "MPI_Comm_set_errhandler");
    }

    /// <summary>This process's rank in [0, <see cref="Size"/>).</summary>
    public int Rank { get; }

    /// <summary>The number of processes in the job.</summary>
    public int Size { get; }

    /// <summary>True on rank 0 (the rank that broadcasts the model, logs and writes files, by convention).</summary>
    public bool IsRoot => Rank == 0;

    /// <summary>The thread level MPI granted (MPI_THREAD_SERIALIZED = 2 is asked for).</summary>
    public int ThreadLevel { get; }

    /// <summary>The loaded library and its version line, e.g. "libmpi.so.40: Open MPI v4.1.4, ...".</summary>
    public string Library => $"{_mpi.Path}: {_mpi.Version?.Split('\n')[0].Trim().TrimEnd(',') ?? "unknown version"}";

    /// <summary>
    /// Whether Open MPI's libmpi can be loaded here; when not, <paramref name="reason"/> says what was
    /// tried and how to install it (<c>apt-get install openmpi-bin libopenmpi-dev</c>), or which other MPI was found.
    /// </summary>
    public static bool IsAvailable(out string reason) => MpiLibrary.TryGet(out reason) is not null;

    /// <summary>
    /// The job's communicator: initializes MPI (MPI_Init_thread) on the first call and returns the same
    /// instance afterwards. <see cref="Dispose"/> finalizes MPI, after which MPI cannot start again in this
    /// process. Throws <see cref="DistributedException"/> when no usable MPI library is installed.
    /// </summary>
    public static Communicator Initialize()
    {
        lock (WorldGate)
        {
            if (s_world is { _disposed: false })
            {
                return s_world;
            }
            var mpi = MpiLibrary.TryGet(out string reason)
                ?? throw new DistributedException($"Communicator.Initialize: {reason}");
            int initialized = 0, finalized = 0;
            CheckStartup(mpi, mpi.Finalized(&finalized), "MPI_Finalized");
            if (finalized != 0)
            {
                throw new DistributedException("Communicator.Initialize: MPI was already finalized in this process (by Dispose): MPI cannot be initialized twice.");
            }
            CheckStartup(mpi, mpi.Initialized(&initialized), "MPI_Initialized");
            int provided = MpiLibrary.ThreadSerialized;
            if (initialized == 0)
            {
                CheckStartup(mpi, mpi.InitThread(null, 0, MpiLibrary.ThreadSerialized, &provided), "MPI_Init_thread");
            }
            s_world = new Communicator(mpi, initialized == 0, provided);
            return s_world;
        }
    }

    /// <summary>The split of a meta-batch of <paramref name="tasks"/> tasks that this rank runs: <see cref="TaskRange.For"/>(tasks, Rank, Size).</summary>
    public TaskRange Split(int tasks) => TaskRange.For(tasks, Rank, Size);

    /// <summary>Blocks until every rank has called it (MPI_Barrier).</summary>
    public void Barrier()
    {
        lock (_gate)
        {
            ThrowIfDisposed("Barrier");
            Check(_mpi.Barrier(_mpi.CommWorld), "MPI_Barrier");
        }
    }

    /// <summary>
    /// The reduction of one number over the ranks (every rank gets the same value). One MPI call, with no
    /// agreement round before it: a double has no shape to disagree on (every rank must pass the same op).
    /// </summary>
    public double AllReduce(double value, CollectiveOp op = CollectiveOp.Sum)
    {
        lock (_gate)
        {
            ThrowIfDisposed("AllReduce");
            double result = value;
            Check(_mpi.Allreduce(MpiLibrary.InPlace, (nint)(&result), 1, _mpi.Double, MpiOp(op), _mpi.CommWorld), "MPI_Allreduce");
            return op == CollectiveOp.Mean ? result / Size : result;
        }
    }

    /// <summary>The reduction of <paramref name="tensor"/> over the ranks, as a new tensor on its device (see <see cref="AllReduce(IReadOnlyList{Tensor}, CollectiveOp)"/>).</summary>
    public Tensor AllReduce(Tensor tensor, CollectiveOp op = CollectiveOp.Sum)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        return AllReduce([tensor], op)[0];
    }

    /// <summary>
    /// y_i = Σ_r x_i^(r) (or the mean, max or min) for each tensor x_i of the list, over the ranks r: new
    /// tensors (detached, on each input's device), the inputs unchanged. Every rank must pass the same
    /// number of tensors with the same shapes, dtypes (float32 or float64) and device types; the sum of
    /// each element is taken by MPI in the order its algorithm fixes for the job's size, and Open MPI
    /// gives every rank the same bits.
    /// </summary>
    public IReadOnlyList<Tensor> AllReduce(IReadOnlyList<Tensor> tensors, CollectiveOp op = CollectiveOp.Sum)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        CheckOperands("AllReduce", tensors, floatOnly: true);
        lock (_gate)
        {
            ThrowIfDisposed("AllReduce");
            Agree("AllReduce", Metadata(tensors, (long)op), () => Describe(tensors) + $", {op}");
            if (tensors.Count == 0)
            {
                return [];
            }
            if (tensors[0].Device.Type == DeviceType.Cuda)
            {
                return NcclFor("AllReduce", tensors).AllReduce(tensors, op);
            }
            var results = new Tensor[tensors.Count];
            ReduceHost<double>(tensors, DType.Float64, _mpi.Double, op, results);
            ReduceHost<float>(tensors, DType.Float32, _mpi.Float, op, results);
            return results;
        }
    }

    /// <summary>Copies <paramref name="tensor"/> of rank <paramref name="root"/> into the same tensor of every other rank, in place.</summary>
    public void Broadcast(Tensor tensor, int root = 0)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        Broadcast([tensor], root);
    }

    /// <summary>
    /// Copies each tensor of rank <paramref name="root"/> into the same tensor of every other rank, in place
    /// (as <see cref="Tensor.CopyFrom"/>: the tensors' versions are bumped, under no-grad); any dtype. Every
    /// rank must pass tensors of the same shapes, dtypes and device types, and the same root.
    /// </summary>
    public void Broadcast(IReadOnlyList<Tensor> tensors, int root = 0)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        CheckOperands("Broadcast", tensors, floatOnly: false);
        if (root < 0 || root >= Size)
        {
            throw new ArgumentOutOfRangeException(nameof(root), root, $"Broadcast: root must be a rank in [0, {Size}).");
        }
        lock (_gate)
        {
            ThrowIfDisposed("Broadcast");
            Agree("Broadcast", Metadata(tensors, root), () => Describe(tensors) + $", root {root}");
            if (tensors.Count == 0)
            {
                return;
            }
            if (tensors[0].Device.Type == DeviceType.Cuda)
            {
                NcclFor("Broadcast", tensors).Broadcast(tensors, root);
                return;
            }
            BroadcastHost(tensors, root);
        }
    }

    /// <summary>Finalizes MPI (MPI_Finalize) if this communicator initialized it, after destroying its NCCL communicators. Collectives afterwards throw.</summary>
    public void Dispose()
    {
        lock (_gate)
        {
            if (_disposed)
            {
                return;
            }
            _disposed = true;
            foreach (var nccl in _nccl.Values)
            {
                nccl.Dispose();
            }
            _nccl.Clear();
            if (_initializedHere)
            {
                int finalized = 0;
                if (_mpi.Finalized(&finalized) == MpiLibrary.Success && finalized == 0)
                {
                    Check(_mpi.FinalizeMpi(), "MPI_Finalize");
                }
            }
        }
    }

    // ------------------------------------------------------------------ host collectives

    private void ReduceHost<T>(IReadOnlyList<Tensor> tensors, DType dtype, nint mpiType, CollectiveOp op, Tensor[] results)
        where T : unmanaged, System.Numerics.IFloatingPoint<T>
    {
        long total = 0;
        foreach (var t in tensors)
        {
            total += t.DType == dtype ? t.Numel : 0;
        }
        if (total == 0 && !tensors.Any(t => t.DType == dtype))
        {
            return;
        }
        var buffer = new T[total];
        long offset = 0;
        foreach (var t in tensors)
        {
            if (t.DType == dtype)
            {
                HostElements<T>(t).CopyTo(buffer.AsSpan((int)offset, (int)t.Numel));
                offset += t.Numel;
            }
        }
        fixed (T* p = buffer)
        {
            const long Chunk = 1 << 28;
            for (long start = 0; start < total; start += Chunk)
            {
                int count = (int)Math.Min(Chunk, total - start);
                Check(_mpi.Allreduce(MpiLibrary.InPlace, (nint)(p + start), count, mpiType, MpiOp(op), _mpi.CommWorld), "MPI_Allreduce");
            }
        }
        if (op == CollectiveOp.Mean)
        {
            var size = T.CreateChecked(Size);
            for (long i = 0; i < total; i++)
            {
                buffer[i] /= size;
            }
        }
        offset = 0;
        for (int i = 0; i < tensors.Count; i++)
        {
            var t = tensors[i];
            if (t.DType != dtype)
            {
                continue;
            }
            var slice = buffer.AsSpan((int)offset, (int)t.Numel).ToArray();
            offset += t.Numel;
            results[i] = slice switch
            {
                double[] d => Tensor.FromArray(d, t.Shape, t.Device),
                float[] f => Tensor.FromArray(f, t.Shape, t.Device),
                _ => throw new InvalidOperationException($"AllReduce: no tensor constructor for {typeof(T).Name}."),
            };
        }
    }

    private void BroadcastHost(IReadOnlyList<Tensor> tensors, int root)
    {
        long total = 0;
        foreach (var t in tensors)
        {
            total += t.Numel * t.DType.SizeOf();
        }
        var bytes = new byte[total];
        long offset = 0;
        if (Rank == root)
        {
            foreach (var t in tensors)
            {
                var source = HostBytes(t);
                source.CopyTo(bytes.AsSpan((int)offset, source.Length));
                offset += source.Length;
            }
        }
        fixed (byte* p = bytes)
        {
            const long Chunk = 1 << 30;
            for (long start = 0; start < total; start += Chunk)
            {
                int count = (int)Math.Min(Chunk, total - start);
                Check(_mpi.Bcast((nint)(p + start), count, _mpi.Byte, root, _mpi.CommWorld), "MPI_Bcast");
            }
        }
        if (Rank == root)
        {
            return;
        }
        offset = 0;
        using (Autograd.NoGrad())
        {
            foreach (var t in tensors)
            {
                int length = checked((int)(t.Numel * t.DType.SizeOf()));
                var slice = bytes.AsSpan((int)offset, length);
                offset += length;
                var received = t.DType switch
                {
                    DType.Float64 => Tensor.FromArray(MemoryMarshal.Cast<byte, double>(slice).ToArray(), t.Shape, t.Device),
                    DType.Float32 => Tensor.FromArray(MemoryMarshal.Cast<byte, float>(slice).ToArray(), t.Shape, t.Device),
                    DType.Int64 => Tensor.FromArray(MemoryMarshal.Cast<byte, long>(slice).ToArray(), t.Shape, t.Device),
                    DType.Bool => Tensor.FromArray(MemoryMarshal.Cast<byte, bool>(slice).ToArray(), t.Shape, t.Device),
                    _ => throw new ArgumentException($"Broadcast: unsupported dtype {t.DType.Name()}."),
                };
                t.CopyFrom(received);
            }
        }
    }

    /// <summary>The elements of a CPU tensor: read in place from a host storage, else downloaded.</summary>
    private static ReadOnlySpan<T> HostElements<T>(Tensor t) where T : unmanaged =>
        t.Storage is IHostStorage host ? host.Read<T>()[..(int)t.Numel] : Download<T>(t);

    private static ReadOnlySpan<byte> HostBytes(Tensor t) => t.DType switch
    {
        DType.Float64 => MemoryMarshal.AsBytes(HostElements<double>(t)),
        DType.Float32 => MemoryMarshal.AsBytes(HostElements<float>(t)),
        DType.Int64 => MemoryMarshal.AsBytes(HostElements<long>(t)),
        DType.Bool => MemoryMarshal.AsBytes(HostElements<bool>(t)),
        _ => throw new ArgumentException($"Broadcast: unsupported dtype {t.DType.Name()}."),
    };

    private static T[] Download<T>(Tensor t) where T : unmanaged
    {
        var data = new T[t.Numel];
        t.Backend.Download<T>(t.Storage, data);
        return data;
    }

    // ------------------------------------------------------------------ agreement between ranks

    /// <summary>
    /// Checks that every rank passes the same <paramref name="local"/> numbers (one MPI_Allgather of a few
    /// int64s). When they differ, every rank has seen it: they exchange the descriptions of their operands
    /// and all throw the same message, naming each rank's.
    /// </summary>
    private void Agree(string call, ReadOnlySpan<long> local, Func<string> describe)
    {
        int k = local.Length;
        var mine = local.ToArray();
        var all = new long[k * Size];
        fixed (long* pm = mine)
        fixed (long* pa = all)
        {
            Check(_mpi.Allgather((nint)pm, k, _mpi.Int64, (nint)pa, k, _mpi.Int64, _mpi.CommWorld), "MPI_Allgather", call);
        }
        bool same = true;
        for (int r = 1; r < Size && same; r++)
        {
            same = all.AsSpan(r * k, k).SequenceEqual(all.AsSpan(0, k));
        }
        if (same)
        {
            return;
        }
        var descriptions = GatherStrings(describe(), call);
        var text = new StringBuilder($"{call}: the {Size} ranks disagree on their operands (every rank must pass the same count, shapes, dtypes and device types");
        text.Append(call == "Broadcast" ? ", and the same root" : call.StartsWith("AllReduce", StringComparison.Ordinal) ? ", and the same op" : "");
        text.Append("): ");
        text.AppendJoin("; ", descriptions.Select((d, r) => $"rank {r}: {d}"));
        text.Append('.');
        throw new DistributedException(text.ToString()) { Call = call };
    }

    private string[] GatherStrings(string local, string call)
    {
        var bytes = Encoding.UTF8.GetBytes(local);
        int length = bytes.Length;
        var lengths = new int[Size];
        fixed (int* pl = lengths)
        {
            Check(_mpi.Allgather((nint)(&length), 1, _mpi.Int, (nint)pl, 1, _mpi.Int, _mpi.CommWorld), "MPI_Allgather", call);
        }
        var displacements = new int[Size];
        for (int r = 1; r < Size; r++)
        {
            displacements[r] = displacements[r - 1] + lengths[r - 1];
        }
        var all = new byte[Math.Max(1, displacements[^1] + lengths[^1])];
        fixed (byte* pb = bytes)
        fixed (byte* pa = all)
        fixed (int* pl = lengths)
        fixed (int* pd = displacements)
        {
            Check(_mpi.Allgatherv((nint)pb, length, _mpi.Byte, (nint)pa, pl, pd, _mpi.Byte, _mpi.CommWorld), "MPI_Allgatherv", call);
        }
        return Enumerable.Range(0, Size).Select(r => Encoding.UTF8.GetString(all, displacements[r], lengths[r])).ToArray();
    }

    /// <summary>[count, extra, Σ numel, FNV-1a of (dtype, device type, dims) of every tensor].</summary>
    internal static long[] Metadata(IReadOnlyList<Tensor> tensors, long extra)
    {
        ulong hash = 14695981039346656037UL;
        long numel = 0;
        void Mix(long v)
        {
            hash ^= (ulong)v;
            hash *= 1099511628211UL;
        }
        foreach (var t in tensors)
        {
            Mix((long)t.DType);
            Mix((long)t.Device.Type);
            Mix(t.Rank);
            foreach (int d in t.Shape.Dims)
            {
                Mix(d);
            }
            numel += t.Numel;
        }
        return [tensors.Count, extra, numel, (long)hash];
    }

    /// <summary>"3 tensors on cpu: float64 [40, 1], float64 [40], float64 [1]".</summary>
    internal static string Describe(IReadOnlyList<Tensor> tensors)
    {
        if (tensors.Count == 0)
        {
            return "no tensors";
        }
        var devices = string.Join("/", tensors.Select(t => t.Device.ToString()).Distinct());
        return $"{tensors.Count} tensor{(tensors.Count == 1 ? "" : "s")} on {devices}: {string.Join(", ", tensors.Select(t => $"{t.DType.Name()} {t.Shape}"))}";
    }

    /// <summary>Checks what one rank can check alone (the same on every rank of an SPMD program), before any collective.</summary>
    private static void CheckOperands(string call, IReadOnlyList<Tensor> tensors, bool floatOnly)
    {
        Device? device = null;
        for (int i = 0; i < tensors.Count; i++)
        {
            var t = tensors[i] ?? throw new ArgumentNullException(nameof(tensors), $"{call}: tensor {i} of {tensors.Count} is null.");
            if (floatOnly && !t.DType.IsFloatingPoint())
            {
                throw new ArgumentException($"{call}: tensor {i} ({t.DType.Name()} {t.Shape}) is not float32 or float64; only floating-point tensors can be reduced.", nameof(tensors));
            }
            if (device is { } d && d != t.Device)
            {
                throw new ArgumentException($"{call}: tensor {i} ({t.DType.Name()} {t.Shape}) is on {t.Device} but tensor 0 is on {d}; one collective takes tensors of one device.", nameof(tensors));
            }
            device = t.Device;
            if (t.IsReleased)
            {
                throw new ObjectDisposedException(nameof(Tensor), $"{call}: tensor {i} ({t.DType.Name()} {t.Shape}) was released by its scope.");
            }
        }
    }

    private NcclContext NcclFor(string call, IReadOnlyList<Tensor> tensors)
    {
        int device = tensors[0].Device.Index;
        if (!_nccl.TryGetValue(device, out var context))
        {
            context = NcclContext.Create(this, call, device);
            _nccl[device] = context;
        }
        return context;
    }

    // ------------------------------------------------------------------ MPI plumbing for the NCCL bootstrap

    /// <summary>Every rank's flag (MPI_Allgather of one int), for the NCCL bootstrap to agree before it starts.</summary>
    internal int[] AllGather(int value, string call)
    {
        var all = new int[Size];
        fixed (int* pa = all)
        {
            Check(_mpi.Allgather((nint)(&value), 1, _mpi.Int, (nint)pa, 1, _mpi.Int, _mpi.CommWorld), "MPI_Allgather", call);
        }
        return all;
    }

    /// <summary>MPI_Bcast of raw bytes from <paramref name="root"/> (the NCCL unique id).</summary>
    internal void BroadcastBytes(Span<byte> bytes, int root, string call)
    {
        fixed (byte* p = bytes)
        {
            Check(_mpi.Bcast((nint)p, bytes.Length, _mpi.Byte, root, _mpi.CommWorld), "MPI_Bcast", call);
        }
    }

    /// <summary>An MPI_Allreduce that MPI refuses (count -1): the tests' check that a failing collective is reported with its call and rank.</summary>
    internal void FailForTest()
    {
        lock (_gate)
        {
            ThrowIfDisposed("FailForTest");
            double value = 0;
            Check(_mpi.Allreduce(MpiLibrary.InPlace, (nint)(&value), -1, _mpi.Double, _mpi.OpSum, _mpi.CommWorld), "MPI_Allreduce");
        }
    }

    private nint MpiOp(CollectiveOp op) => op switch
    {
        CollectiveOp.Sum or CollectiveOp.Mean => _mpi.OpSum,
        CollectiveOp.Max => _mpi.OpMax,
        CollectiveOp.Min => _mpi.OpMin,
        _ => throw new ArgumentOutOfRangeException(nameof(op), op, "Unknown CollectiveOp."),
    };

    private void ThrowIfDisposed(string call)
    {
        if (_disposed)
        {
            throw new ObjectDisposedException(nameof(Communicator), $"{call}: the communicator was disposed (MPI is finalized).");
        }
    }

    private void Check(int status, string mpiCall, string? call = null, int? checkedRank = null)
    {
        if (status != MpiLibrary.Success)
        {
            int rank = checkedRank ?? Rank;
            string where = rank < 0 ? "" : $" on rank {rank} of {Size}";
            string during = call is null ? "" : $" (during {call})";
            throw new DistributedException($"{mpiCall} failed{where}{during}: {_mpi.DescribeError(status)} (MPI error {status})")
            {
                Call = mpiCall,
                ErrorCode = status,
            };
        }
    }

    private static void CheckStartup(MpiLibrary mpi, int status, string mpiCall)
    {
        if (status != MpiLibrary.Success)
        {
            throw new DistributedException($"Communicator.Initialize: {mpiCall} failed: {mpi.DescribeError(status)} (MPI error {status})")
            {
                Call = mpiCall,
                ErrorCode = status,
            };
        }
    }
}
