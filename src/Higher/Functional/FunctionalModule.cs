using Higher.Nn;

namespace Higher.Functional;

/// <summary>
/// A stateless view of a <see cref="Module"/> (higher's patched module): forward passes take the
/// weights to use, and the module itself is never mutated. Keeps the history of fast weights:
/// time 0 is the initial weights; every optimizer step, explicit <c>params</c> or assignment appends
/// one entry. Buffers (BatchNorm statistics) are copies owned by this view; training updates them
/// here, never in the original. Functional calls bind weights to the logical flow of the call
/// (see <see cref="Binding"/>): tasks and awaits inside a call see its weights, and two views of one
/// model can run on two threads at once. Every call validates its arguments first and changes
/// nothing when it throws.
/// </summary>
public sealed partial class FunctionalModule
{
    private readonly List<Tensor[]> _history = [];
    private readonly Parameter[] _handles;
    private readonly string[] _names;
    private readonly Dictionary<ModuleBuffer, Tensor?> _buffers = new(ReferenceEqualityComparer.Instance);
    private int _dropped;
    private int? _maxHistory;
    private string? _disposedBy;

    internal FunctionalModule(Module module, IReadOnlyList<Tensor> initial, bool trackHigherGrads, Device? device, int tasks = 0)
    {
        Module = module;
        Tasks = tasks;
        var handles = module.NamedParameterHandles();
        _handles = handles.Select(h => h.Parameter).ToArray();
        _names = handles.Select(h => h.Name).ToArray();
        TrackHigherGrads = trackHigherGrads;
        Device = device;
        CheckParams(initial, nameof(initial), "Monkeypatch", initial: true);
        _history.Add(initial.ToArray());
        SyncBuffers(module, device);
    }

    /// <summary>The module this view runs.</summary>
    public Module Module { get; }

    /// <summary>
    /// The number of tasks T of a task-batched view (<see cref="InnerLoop.CreateBatched"/>), or 0 for a
    /// plain one. In a task-batched view every fast weight and buffer is [T, ...] (the parameter's
    /// shape after a leading task dimension), inputs are [T, B, ...], and forwards run with
    /// <see cref="Binding.Tasks"/> set to T.
    /// </summary>
    public int Tasks { get; }

    /// <summary>Device the fast weights and buffers were cast to, if any.</summary>
    public Device? Device { get; }

    /// <summary>
    /// Whether new fast weights keep their graphs. When false there is a single slot that every
    /// assignment replaces: times 0 and -1 both name it (higher's test-time mode).
    /// </summary>
    public bool TrackHigherGrads { get; set; }

    /// <summary>
    /// How many fast-weight sets to keep besides time 0, the latest included (null: all, as higher
    /// does); at least 1. Asking for a dropped time is an error that says so. This bounds the history
    /// list only: while tracking, the latest fast weights still reach every earlier step through their
    /// graph, so the memory of a tracked unroll keeps growing with it. To bound that, cut the graph
    /// (<see cref="DifferentiableOptimizerOptions.TruncateEvery"/>, <see cref="DifferentiableOptimizer.Truncate"/>)
    /// or turn tracking off (bench/RESULTS.md measures each).
    /// </summary>
    public int? MaxHistory
    {
        get => _maxHistory;
        set
        {
            if (value is < 1)
            {
                throw new ArgumentOutOfRangeException(nameof(value), value,
                    $"MaxHistory must be at least 1 (the latest fast weights are always kept besides time 0), or null to keep every step; got {value}.");
            }
            _maxHistory = value;
            Trim();
        }
    }

    /// <summary>Dotted parameter names, in the order of every weight list.</summary>
    public IReadOnlyList<string> ParameterNames => _names;

    /// <summary>The latest fast weights. Setting appends a new entry (replaces it with tracking off).</summary>
    public IReadOnlyList<Tensor> FastParams
    {
        get => _history[^1];
        set => UpdateParams(value);
    }

    /// <summary>The initial (time 0) fast weights.</summary>
    public IReadOnlyList<Tensor> InitFastParams => _history[0];

    /// <summary>Number of fast-weight sets recorded (time 0 included), counting dropped ones.</summary>
    public int HistoryLength => _history.Count + _dropped;

    /// <summary>
    /// The fast weights at step <paramref name="time"/> (null: latest; negative counts from the end).
    /// With tracking off only 0 and -1 are valid.
    /// </summary>
    public IReadOnlyList<Tensor> Parameters(int? time = null)
    {
        if (time is null)
        {
            return _history[^1];
        }
        int t = time.Value;
        if (!TrackHigherGrads && t != 0 && t != -1)
        {
            throw new ArgumentOutOfRangeException(nameof(time), t, "With TrackHigherGrads off only times 0 and -1 are kept.");
        }
        int length = HistoryLength;
        int absolute = t < 0 ? length + t : t;
        if (absolute < 0 || absolute >= length)
        {
            throw new ArgumentOutOfRangeException(nameof(time), t, $"Time {t} is outside the fast-weight history (length {length}).");
        }
        if (absolute == 0)
        {
            return _history[0];
        }
        int index = absolute - _dropped;
        if (index < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(time), t, $"Time {t} was dropped from the history (MaxHistory = {MaxHistory}).");
        }
        return _history[index];
    }

    /// <summary>Makes <paramref name="parameters"/> the latest fast weights (a new history entry).</summary>
    public void UpdateParams(IReadOnlyList<Tensor> parameters)
    {
        ThrowIfDisposed("UpdateParams");
        CheckParams(parameters, nameof(parameters), "UpdateParams");
        Append(parameters.ToArray());
    }

    private void Append(Tensor[] copy)
    {
        if (!TrackHigherGrads)
        {
            // higher keeps a single slot in test-time mode: times 0 and -1 both name it.
            _history.Clear();
            _history.Add(copy);
            _dropped = 0;
            return;
        }
        _history.Add(copy);
        Trim();
    }

    private void Trim()
    {
        if (_maxHistory is int max && _history.Count - 1 > max)
        {
            int remove = _history.Count - 1 - max;
            _history.RemoveRange(1, remove);
            _dropped += remove;
        }
    }

    /// <summary>Replaces one named fast weight (a new history entry with that weight changed).</summary>
    public void SetFastWeight(string name, Tensor value)
    {
        ThrowIfDisposed("SetFastWeight");
        ArgumentNullException.ThrowIfNull(value);
        int i = Array.IndexOf(_names, name);
        if (i < 0)
        {
            throw new ArgumentException($"No parameter named '{name}'; the parameters are: {string.Join(", ", _names)}.", nameof(name));
        }
        var next = _history[^1].ToArray();
        next[i] = value;
        CheckParams(next, nameof(value), "SetFastWeight");
        Append(next);
    }

    /// <summary>The latest fast weight called <paramref name="name"/>.</summary>
    public Tensor FastWeight(string name)
    {
        int i = Array.IndexOf(_names, name);
        return i >= 0 ? _history[^1][i] : throw new ArgumentException($"No parameter named '{name}'; the parameters are: {string.Join(", ", _names)}.", nameof(name));
    }

    /// <summary>
    /// Cuts the graph behind the latest fast weights (truncated backpropagation): they are replaced
    /// by detached leaves that require grad where the originals did, in a new history entry.
    /// </summary>
    public IReadOnlyList<Tensor> DetachFastParams()
    {
        ThrowIfDisposed("DetachFastParams");
        var detached = _history[^1].Select(p => p.RequiresGrad ? p.Detach().WithRequiresGrad() : p).ToArray();
        UpdateParams(detached);
        return detached;
    }

    /// <summary>Runs the module's forward with the latest fast weights, or with <paramref name="parameters"/> (which become the latest).</summary>
    public Tensor Forward(Tensor input, IReadOnlyList<Tensor>? parameters = null) => Call(m => m.Forward(input), parameters);

    /// <summary>
    /// Runs any code against the module with the fast weights bound: direct submodule calls and
    /// multi-input forwards (recurrent layers) see the current weights, never stale ones.
    /// </summary>
    /// <remarks>
    /// The binding follows the logical flow of the call: <c>Task.Run</c>, <c>Parallel.For</c> and code
    /// after an <c>await</c> inside <paramref name="forward"/> see the same weights. Given
    /// <paramref name="parameters"/> are checked first (count, shape, dtype, device) and become the
    /// latest fast weights only when <paramref name="forward"/> returns; a forward that throws leaves
    /// the history as it was.
    /// </remarks>
    public T Call<T>(Func<Module, T> forward, IReadOnlyList<Tensor>? parameters = null)
    {
        ThrowIfDisposed("Call");
        ArgumentNullException.ThrowIfNull(forward);
        Tensor[]? given = null;
        if (parameters is not null)
        {
            CheckParams(parameters, nameof(parameters), "Forward");
            given = parameters.ToArray();
        }
        var current = given ?? _history[^1];
        var map = new Dictionary<Parameter, Tensor>(_handles.Length, ReferenceEqualityComparer.Instance);
        for (int i = 0; i < _handles.Length; i++)
        {
            map[_handles[i]] = current[i];
        }
        T result;
        using (Binding.Bind(map, _buffers, Tasks))
        {
            result = forward(Module);
        }
        if (given is not null)
        {
            Append(given);
        }
        return result;
    }

    /// <summary>The buffers owned by this view, by dotted name.</summary>
    public IReadOnlyList<(string Name, Tensor? Value)> Buffers() =>
        Module.NamedBufferHandles().Select(b => (b.Name, _buffers.TryGetValue(b.Buffer, out var v) ? v : null)).ToList();

    /// <summary>Copies the module's buffers into this view (higher's buffer_sync).</summary>
    public void SyncBuffers(Module module, Device? device = null)
    {
        ThrowIfDisposed("SyncBuffers");
        ArgumentNullException.ThrowIfNull(module);
        // One walk of the module tree, not three: every inner-loop context syncs its buffers once (per
        // task of a meta-step), and the view's own module has no foreign buffers to look for.
        var handles = module.NamedBufferHandles();
        if (!ReferenceEquals(module, Module) && handles.Count > 0)
        {
            var own = new HashSet<ModuleBuffer>(Module.NamedBufferHandles().Select(b => b.Buffer), ReferenceEqualityComparer.Instance);
            var foreign = handles.Where(b => !own.Contains(b.Buffer)).Select(b => b.Name).ToList();
            if (foreign.Count > 0)
            {
                // Another module's buffers would be stored here and never read: the sync would do nothing.
                throw new ArgumentException(
                    $"SyncBuffers: buffers [{string.Join(", ", foreign)}] of the given {module.GetType().Name} are not buffers of this view's {Module.GetType().Name}; pass the module this view was made from.", nameof(module));
            }
        }
        if (handles.Count == 0)
        {
            return;
        }
        using var _ = Autograd.NoGrad();
        // Copied first, stored after: a move to a device that fails leaves the buffers as they were.
        var copies = new List<(ModuleBuffer, Tensor)>();
        foreach (var (_, b) in handles)
        {
            var data = b.Data!.Detach();
            var copy = device is { } d ? data.To(d).Clone() : data.Clone();
            // A task-batched view keeps one copy per task (per-task batch-norm statistics).
            copies.Add((b, Tasks > 0 ? TaskBatching.Broadcast(copy, Tasks) : copy));
        }
        foreach (var (b, copy) in copies)
        {
            _buffers[b] = copy;
        }
    }

    /// <summary>Frees the fast-weight history except the latest entry and time 0.</summary>
    public void ClearHistory()
    {
        if (_history.Count > 2)
        {
            _dropped += _history.Count - 2;
            _history.RemoveRange(1, _history.Count - 2);
        }
    }

    /// <summary>
    /// Marks the view as disposed (its inner-loop context was): later calls that use it throw, and the
    /// history it kept can still be read.
    /// </summary>
    internal void MarkDisposed(string by) => _disposedBy ??= by;

    /// <summary>True once the inner-loop context that owns this view was disposed.</summary>
    public bool IsDisposed => _disposedBy is not null;

    private void ThrowIfDisposed(string call)
    {
        if (_disposedBy is not null)
        {
            throw new ObjectDisposedException(nameof(FunctionalModule),
                $"FunctionalModule.{call}: this functional view of {Module.GetType().Name} belongs to an {_disposedBy} that was disposed; create a new context.");
        }
    }

    /// <summary>
    /// Checks a weight list against the module: the count, and each weight's shape (against the
    /// parameter), dtype and device (against time 0), naming the call, the index and the name.
    /// </summary>
    private void CheckParams(IReadOnlyList<Tensor> parameters, string argument, string call, bool initial = false)
    {
        ArgumentNullException.ThrowIfNull(parameters, argument);
        if (parameters.Count != _handles.Length)
        {
            throw new ArgumentException($"{call}: expected {_handles.Length} fast weights ({string.Join(", ", _names)}), got {parameters.Count}.", argument);
        }
        for (int i = 0; i < _handles.Length; i++)
        {
            var p = parameters[i] ?? throw new ArgumentNullException(argument, $"{call}: fast weight {i} ('{_names[i]}') is null.");
            var expected = Tasks > 0 ? TaskBatching.WithTasks(_handles[i].Shape, Tasks) : _handles[i].Shape;
            if (p.Shape != expected)
            {
                throw new ArgumentException(Tasks > 0
                    ? $"{call}: fast weight {i} ('{_names[i]}') has shape {p.Shape}, but this task-batched view over {Tasks} tasks needs {expected} (the parameter's {_handles[i].Shape} after the task dimension)."
                    : $"{call}: fast weight {i} ('{_names[i]}') has shape {p.Shape} but the parameter has {_handles[i].Shape}.", argument);
            }
            var like = initial ? _handles[i].Data : _history[0][i];
            if (p.DType != like.DType || (!initial && p.Device != like.Device))
            {
                throw new ArgumentException(
                    $"{call}: fast weight {i} ('{_names[i]}') is {p.Shape} {p.DType.Name()} on {p.Device}, but the module's weights are {like.DType.Name()} on {(initial ? p.Device : like.Device)}.", argument);
            }
        }
    }
}
