using Higher.Nn;

namespace Higher.Functional;

/// <summary>
/// A stateless view of a <see cref="Module"/> (higher's patched module): forward passes take the
/// weights to use, and the module itself is never mutated. Keeps the history of fast weights:
/// time 0 is the initial weights; every optimizer step, explicit <c>params</c> or assignment appends
/// one entry. Buffers (BatchNorm statistics) are copies owned by this view; training updates them
/// here, never in the original. Functional calls bind weights thread-locally, so two views of one
/// model can run on two threads at once.
/// </summary>
public sealed class FunctionalModule
{
    private readonly List<Tensor[]> _history = [];
    private readonly Parameter[] _handles;
    private readonly string[] _names;
    private readonly Dictionary<ModuleBuffer, Tensor?> _buffers = new(ReferenceEqualityComparer.Instance);
    private int _dropped;

    internal FunctionalModule(Module module, IReadOnlyList<Tensor> initial, bool trackHigherGrads, Device? device)
    {
        Module = module;
        var handles = module.NamedParameterHandles();
        _handles = handles.Select(h => h.Parameter).ToArray();
        _names = handles.Select(h => h.Name).ToArray();
        TrackHigherGrads = trackHigherGrads;
        Device = device;
        CheckParams(initial, nameof(initial));
        _history.Add(initial.ToArray());
        SyncBuffers(module, device);
    }

    /// <summary>The module this view runs.</summary>
    public Module Module { get; }

    /// <summary>Device the fast weights and buffers were cast to, if any.</summary>
    public Device? Device { get; }

    /// <summary>
    /// Whether new fast weights keep their graphs. When false there is a single slot that every
    /// assignment replaces: times 0 and -1 both name it (higher's test-time mode).
    /// </summary>
    public bool TrackHigherGrads { get; set; }

    /// <summary>
    /// How many past fast-weight sets to keep besides time 0 (null: all, as higher does). A bound
    /// keeps memory flat in long unrolls; asking for a dropped time is an error that says so.
    /// </summary>
    public int? MaxHistory { get; set; }

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
        CheckParams(parameters, nameof(parameters));
        var copy = parameters.ToArray();
        if (!TrackHigherGrads)
        {
            // higher keeps a single slot in test-time mode: times 0 and -1 both name it.
            _history.Clear();
            _history.Add(copy);
            _dropped = 0;
            return;
        }
        _history.Add(copy);
        if (MaxHistory is int max && _history.Count - 1 > max)
        {
            int remove = _history.Count - 1 - max;
            _history.RemoveRange(1, remove);
            _dropped += remove;
        }
    }

    /// <summary>Replaces one named fast weight (a new history entry with that weight changed).</summary>
    public void SetFastWeight(string name, Tensor value)
    {
        ArgumentNullException.ThrowIfNull(value);
        int i = Array.IndexOf(_names, name);
        if (i < 0)
        {
            throw new ArgumentException($"No parameter named '{name}'; the parameters are: {string.Join(", ", _names)}.", nameof(name));
        }
        var next = _history[^1].ToArray();
        next[i] = value;
        UpdateParams(next);
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
    public T Call<T>(Func<Module, T> forward, IReadOnlyList<Tensor>? parameters = null)
    {
        ArgumentNullException.ThrowIfNull(forward);
        if (parameters is not null)
        {
            UpdateParams(parameters);
        }
        var current = _history[^1];
        var map = new Dictionary<Parameter, Tensor>(_handles.Length, ReferenceEqualityComparer.Instance);
        for (int i = 0; i < _handles.Length; i++)
        {
            map[_handles[i]] = current[i];
        }
        using var scope = Binding.Bind(map, _buffers);
        return forward(Module);
    }

    /// <summary>The buffers owned by this view, by dotted name.</summary>
    public IReadOnlyList<(string Name, Tensor? Value)> Buffers() =>
        Module.NamedBufferHandles().Select(b => (b.Name, _buffers.TryGetValue(b.Buffer, out var v) ? v : null)).ToList();

    /// <summary>Copies the module's buffers into this view (higher's buffer_sync).</summary>
    public void SyncBuffers(Module module, Device? device = null)
    {
        ArgumentNullException.ThrowIfNull(module);
        using var _ = Autograd.NoGrad();
        foreach (var (_, b) in module.NamedBufferHandles())
        {
            var data = b.Data!.Detach();
            _buffers[b] = device is { } d ? data.To(d).Clone() : data.Clone();
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

    private void CheckParams(IReadOnlyList<Tensor> parameters, string argument)
    {
        ArgumentNullException.ThrowIfNull(parameters, argument);
        if (parameters.Count != _handles.Length)
        {
            throw new ArgumentException($"Expected {_handles.Length} fast weights ({string.Join(", ", _names)}), got {parameters.Count}.", argument);
        }
        for (int i = 0; i < _handles.Length; i++)
        {
            if (parameters[i].Shape != _handles[i].Shape)
            {
                throw new ArgumentException($"Fast weight {i} ('{_names[i]}') has shape {parameters[i].Shape} but the parameter has {_handles[i].Shape}.", argument);
            }
        }
    }
}
