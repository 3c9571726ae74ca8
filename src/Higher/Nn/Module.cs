namespace Higher.Nn;

/// <summary>
/// Base of every layer and model, as torch.nn.Module: named parameters, buffers and submodules in
/// registration order, train/eval mode, device moves and state dictionaries. Forward passes read
/// parameters through <see cref="Parameter.Value"/>, so a functional call can run any module with
/// supplied weights.
/// </summary>
public abstract class Module
{
    private readonly List<(string Name, Parameter? Value)> _parameters = [];
    private readonly List<(string Name, ModuleBuffer Value)> _buffers = [];
    private readonly List<(string Name, Module Value)> _modules = [];

    /// <summary>True in training mode (the default), false after <see cref="Eval"/>.</summary>
    public bool Training { get; private set; } = true;

    /// <summary>The forward pass for single-input modules.</summary>
    public virtual Tensor Forward(Tensor input) =>
        throw new NotSupportedException($"{GetType().Name} has no single-tensor Forward; call its own forward method.");

    /// <summary>Calls <see cref="Forward(Tensor)"/>.</summary>
    public Tensor Call(Tensor input) => Forward(input);

    /// <summary>
    /// Why this module cannot run task-batched (<see cref="Functional.InnerLoop.CreateBatched"/>, where its
    /// weights are [T, ...] and its inputs [T, B, ...]), or null when it can. Every layer of Higher.Nn
    /// has a task-batched form. A module of your own written from tensor ops that broadcast over a
    /// leading task dimension (or that reads <see cref="Binding.Tasks"/>) runs unchanged; override this
    /// to say why one cannot, and CreateBatched refuses it naming the layer and the reason.
    /// </summary>
    public virtual string? TaskBatchingLimitation => null;

    /// <summary>
    /// True for Higher.Nn's own layers, whose forward keeps no reference to its input or output once it
    /// returns (no field, no cache): <see cref="Sequential"/> then frees an activation between two such
    /// layers as soon as the second has returned, when no tape node saved it (see <see cref="Sequential.Forward"/>).
    /// False for every module defined elsewhere, which may keep what it saw.
    /// </summary>
    internal virtual bool KeepsNoActivations => false;

    /// <summary>
    /// torch's reset_parameters of a convolution: <paramref name="weight"/> Kaiming-uniform with a = √5,
    /// the bias (when <paramref name="bias"/>) uniform in ±1/√fan_in of the weight; registers both as
    /// "weight" and "bias".
    /// </summary>
    protected (Parameter Weight, Parameter? Bias) RegisterConvParameters(Tensor weight, int outChannels, bool bias, Generator? generator)
    {
        ArgumentNullException.ThrowIfNull(weight);
        Init.KaimingUniform(weight, Math.Sqrt(5), generator: generator);
        var w = RegisterParameter("weight", weight)!;
        if (!bias)
        {
            return (w, RegisterParameter("bias", (Parameter?)null));
        }
        double bound = 1 / Math.Sqrt(Init.CalculateFanInAndFanOut(weight).FanIn);
        return (w, RegisterParameter("bias", Tensor.Uniform([outChannels], -bound, bound, generator: generator)));
    }

    /// <summary>Registers a parameter (null registers an absent one, e.g. a disabled bias) and returns its handle.</summary>
    protected Parameter? RegisterParameter(string name, Tensor? data, bool requiresGrad = true) =>
        RegisterParameter(name, data is null ? null : new Parameter(data, requiresGrad));

    /// <summary>Registers an existing handle; registering one handle in two places ties the weights.</summary>
    protected Parameter? RegisterParameter(string name, Parameter? parameter)
    {
        CheckName(name);
        _parameters.Add((name, parameter));
        StructureChanged();
        return parameter;
    }

    /// <summary>Registers a buffer (null: absent) and returns its handle.</summary>
    protected ModuleBuffer RegisterBuffer(string name, Tensor? data, bool persistent = true)
    {
        CheckName(name);
        var buffer = new ModuleBuffer(data, persistent);
        _buffers.Add((name, buffer));
        StructureChanged();
        return buffer;
    }

    /// <summary>Registers a submodule and returns it.</summary>
    protected T RegisterModule<T>(string name, T module) where T : Module
    {
        ArgumentNullException.ThrowIfNull(module);
        CheckName(name);
        _modules.Add((name, module));
        StructureChanged();
        return module;
    }

    /// <summary>Replaces the handle registered as <paramref name="name"/> (weight tying: pass another module's handle).</summary>
    public void SetParameter(string name, Parameter? parameter)
    {
        for (int i = 0; i < _parameters.Count; i++)
        {
            if (_parameters[i].Name == name)
            {
                _parameters[i] = (name, parameter);
                StructureChanged();
                OnParameterReplaced(name, parameter);
                return;
            }
        }
        throw new ArgumentException($"{GetType().Name} has no parameter named '{name}'. It has: {string.Join(", ", _parameters.Select(p => p.Name))}.", nameof(name));
    }

    /// <summary>Lets layers that keep their handles in fields follow <see cref="SetParameter"/>.</summary>
    protected virtual void OnParameterReplaced(string name, Parameter? parameter)
    {
    }

    private void CheckName(string name)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        if (name.Contains('.', StringComparison.Ordinal))
        {
            throw new ArgumentException($"Name '{name}' may not contain '.'.", nameof(name));
        }
        if (_parameters.Any(p => p.Name == name) || _buffers.Any(b => b.Name == name) || _modules.Any(m => m.Name == name))
        {
            throw new ArgumentException($"{GetType().Name} already has a member named '{name}'.", nameof(name));
        }
    }

    /// <summary>Direct submodules in registration order.</summary>
    public IEnumerable<Module> Children() => _modules.Select(m => m.Value);

    /// <summary>Direct submodules with their names.</summary>
    public IEnumerable<(string Name, Module Module)> NamedChildren() => _modules;

    /// <summary>This module and every descendant, depth first, each once.</summary>
    public IEnumerable<(string Name, Module Module)> NamedModules()
    {
        var seen = new HashSet<Module>(ReferenceEqualityComparer.Instance);
        return Walk(this, "", seen);

        static IEnumerable<(string, Module)> Walk(Module m, string prefix, HashSet<Module> seen)
        {
            if (!seen.Add(m))
            {
                yield break;
            }
            yield return (prefix, m);
            foreach (var (name, child) in m._modules)
            {
                foreach (var item in Walk(child, prefix.Length == 0 ? name : prefix + "." + name, seen))
                {
                    yield return item;
                }
            }
        }
    }

    /// <summary>This module and every descendant.</summary>
    public IEnumerable<Module> Modules() => NamedModules().Select(m => m.Module);

    /// <summary>
    /// Parameter handles with dotted names, each handle once (the first name wins, as PyTorch's
    /// named_parameters does with tied weights). This order defines a functional call's weight list.
    /// </summary>
    public IReadOnlyList<(string Name, Parameter Parameter)> NamedParameterHandles()
    {
        // Cached as Parameters() is (every inner-loop context reads the handles and their names).
        int version = Volatile.Read(ref s_structure);
        if (_handleCache is { } cached && cached.Version == version)
        {
            return cached.Items;
        }
        var seen = new HashSet<Parameter>(ReferenceEqualityComparer.Instance);
        var list = new List<(string, Parameter)>();
        foreach (var (prefix, m) in NamedModules())
        {
            foreach (var (name, p) in m._parameters)
            {
                if (p is not null && seen.Add(p))
                {
                    list.Add((prefix.Length == 0 ? name : prefix + "." + name, p));
                }
            }
        }
        IReadOnlyList<(string Name, Parameter Parameter)> handles = [.. list];
        _handleCache = new(version, handles);
        return handles;
    }

    /// <summary>The parameters' tensors (leaves), each once, as a list (<c>model.Parameters()[0].Grad</c>); a snapshot of the current tensors.</summary>
    public IReadOnlyList<Tensor> Parameters()
    {
        // The tensors of NamedParameterHandles (its order and deduplication). Both lists are kept until
        // the next change of any module's parameters or submodules (a global count: registering,
        // SetParameter, Parameter.Data), so the per-task calls of an inner loop walk nothing.
        int version = Volatile.Read(ref s_structure);
        if (_parameterCache is { } cached && cached.Version == version)
        {
            return cached.Items;
        }
        var handles = NamedParameterHandles();
        var data = new Tensor[handles.Count];
        for (int i = 0; i < data.Length; i++)
        {
            data[i] = handles[i].Parameter.Data;
        }
        // A read-only list (a collection expression's): the same instance can go to every caller.
        IReadOnlyList<Tensor> tensors = [.. data];
        _parameterCache = new(version, tensors);
        return tensors;
    }

    // Bumped by every change that can change some module's Parameters(); read before a list is built,
    // so a change during the build leaves a cache that is already stale.
    private static int s_structure;

    private Cached<Tensor>? _parameterCache;
    private Cached<(string Name, Parameter Parameter)>? _handleCache;
    private Cached<(string Name, ModuleBuffer Buffer)>? _bufferCache;

    /// <summary>A list built at structure count <paramref name="Version"/>, read-only, handed to every caller until the count moves.</summary>
    private sealed record Cached<T>(int Version, IReadOnlyList<T> Items);

    /// <summary>Invalidates every module's cached parameter list.</summary>
    internal static void StructureChanged() => Interlocked.Increment(ref s_structure);



    /// <summary>The parameters' tensors with dotted names.</summary>
    public IEnumerable<(string Name, Tensor Value)> NamedParameters() => NamedParameterHandles().Select(p => (p.Name, p.Parameter.Data));

    /// <summary>Buffer handles with dotted names (absent buffers skipped), each once.</summary>
    public IReadOnlyList<(string Name, ModuleBuffer Buffer)> NamedBufferHandles()
    {
        // Cached as Parameters() is; a buffer that becomes absent or present bumps the count too.
        int version = Volatile.Read(ref s_structure);
        if (_bufferCache is { } cached && cached.Version == version)
        {
            return cached.Items;
        }
        var seen = new HashSet<ModuleBuffer>(ReferenceEqualityComparer.Instance);
        var list = new List<(string, ModuleBuffer)>();
        foreach (var (prefix, m) in NamedModules())
        {
            foreach (var (name, b) in m._buffers)
            {
                if (b.Data is not null && seen.Add(b))
                {
                    list.Add((prefix.Length == 0 ? name : prefix + "." + name, b));
                }
            }
        }
        IReadOnlyList<(string Name, ModuleBuffer Buffer)> buffers = [.. list];
        _bufferCache = new(version, buffers);
        return buffers;
    }

    /// <summary>The buffers' tensors.</summary>
    public IEnumerable<Tensor> Buffers() => NamedBufferHandles().Select(b => b.Buffer.Data!);

    /// <summary>The buffers' tensors with dotted names.</summary>
    public IEnumerable<(string Name, Tensor Value)> NamedBuffers() => NamedBufferHandles().Select(b => (b.Name, b.Buffer.Data!));

    /// <summary>Sets training mode on this module and its descendants.</summary>
    public Module Train(bool mode = true)
    {
        foreach (var m in Modules())
        {
            m.Training = mode;
        }
        return this;
    }

    /// <summary>Evaluation mode (dropout off, batch norm uses running statistics).</summary>
    public Module Eval() => Train(false);

    /// <summary>Clears the gradients of every parameter.</summary>
    public void ZeroGrad()
    {
        foreach (var (_, p) in NamedParameterHandles())
        {
            p.Grad = null;
        }
    }

    /// <summary>Moves parameters and buffers to <paramref name="device"/> (in place of the module's tensors; tied weights stay tied).</summary>
    public Module To(Device device) => Apply(t => t.To(device));

    /// <summary>Converts floating-point parameters and buffers to <paramref name="dtype"/>.</summary>
    public Module To(DType dtype) => Apply(t => t.DType.IsFloatingPoint() ? t.To(dtype) : t);

    /// <remarks>
    /// Every tensor is converted before the first is replaced, so a conversion that fails (a device
    /// that is not available) leaves the whole module where it was. The parameters become new
    /// tensors when their device or dtype changes: an optimizer built before the move still holds
    /// the old ones, so build optimizers after moving the model.
    /// </remarks>
    private Module Apply(Func<Tensor, Tensor> convert)
    {
        var parameters = NamedParameterHandles();
        var buffers = NamedBufferHandles();
        var newParams = new Tensor[parameters.Count];
        var newBuffers = new Tensor[buffers.Count];
        using (Autograd.NoGrad())
        {
            for (int i = 0; i < parameters.Count; i++)
            {
                newParams[i] = convert(parameters[i].Parameter.Data);
            }
            for (int i = 0; i < buffers.Count; i++)
            {
                newBuffers[i] = convert(buffers[i].Buffer.Data!);
            }
        }
        for (int i = 0; i < parameters.Count; i++)
        {
            parameters[i].Parameter.Data = newParams[i];
        }
        for (int i = 0; i < buffers.Count; i++)
        {
            buffers[i].Buffer.Data = newBuffers[i];
        }
        return this;
    }

    /// <summary>Copies of every parameter and persistent buffer, keyed by dotted name (tied weights appear under every name).</summary>
    public Dictionary<string, Tensor> StateDict()
    {
        var dict = new Dictionary<string, Tensor>();
        foreach (var (prefix, m) in NamedModules())
        {
            foreach (var (name, p) in m._parameters)
            {
                if (p is not null)
                {
                    dict[Join(prefix, name)] = p.Data.Detach().Clone();
                }
            }
            foreach (var (name, b) in m._buffers)
            {
                if (b.Persistent && b.Data is not null)
                {
                    dict[Join(prefix, name)] = b.Data.Clone();
                }
            }
        }
        return dict;
    }

    /// <summary>
    /// Copies values into the parameters and persistent buffers (float32 and float64 convert into each
    /// other, as torch's copy_ does). Strict (the default): a missing or unexpected key throws. In
    /// every mode a shape mismatch, or an integer or bool value for a floating-point entry (or the
    /// reverse), throws naming the key, both shapes and dtypes, and nothing is changed.
    /// </summary>
    public void LoadStateDict(IReadOnlyDictionary<string, Tensor> state, bool strict = true)
    {
        ArgumentNullException.ThrowIfNull(state);
        var targets = new Dictionary<string, Tensor>();
        foreach (var (prefix, m) in NamedModules())
        {
            foreach (var (name, p) in m._parameters)
            {
                if (p is not null)
                {
                    targets[Join(prefix, name)] = p.Data;
                }
            }
            foreach (var (name, b) in m._buffers)
            {
                if (b.Persistent && b.Data is not null)
                {
                    targets[Join(prefix, name)] = b.Data;
                }
            }
        }
        if (strict)
        {
            var missing = targets.Keys.Where(k => !state.ContainsKey(k)).ToList();
            var unexpected = state.Keys.Where(k => !targets.ContainsKey(k)).ToList();
            if (missing.Count > 0 || unexpected.Count > 0)
            {
                throw new ArgumentException($"LoadStateDict for {GetType().Name}: missing keys [{string.Join(", ", missing)}], unexpected keys [{string.Join(", ", unexpected)}].", nameof(state));
            }
        }
        foreach (var (key, target) in targets)
        {
            if (!state.TryGetValue(key, out var value))
            {
                continue;
            }
            if (value is null)
            {
                throw new ArgumentException($"LoadStateDict for {GetType().Name}: '{key}' is null in the state.", nameof(state));
            }
            if (value.Shape != target.Shape)
            {
                throw new ArgumentException($"LoadStateDict for {GetType().Name}: '{key}' has shape {value.Shape} in the state but {target.Shape} in the module.", nameof(state));
            }
            if (value.DType.IsFloatingPoint() != target.DType.IsFloatingPoint())
            {
                throw new ArgumentException($"LoadStateDict for {GetType().Name}: '{key}' is {value.Shape} {value.DType.Name()} in the state but {target.Shape} {target.DType.Name()} in the module.", nameof(state));
            }
        }
        using (Autograd.NoGrad())
        {
            // Converted and moved first, copied after: a move that fails changes nothing.
            var sources = new List<(Tensor Target, Tensor Source)>();
            foreach (var (key, target) in targets)
            {
                if (state.TryGetValue(key, out var value))
                {
                    sources.Add((target, value.To(target.Device).To(target.DType)));
                }
            }
            foreach (var (target, source) in sources)
            {
                target.CopyFrom(source);
            }
        }
    }

    /// <summary>
    /// The layer's settings for <see cref="ToString"/>, as torch's <c>extra_repr</c>
    /// (<c>in_features=1, out_features=40, bias=True</c>); empty by default.
    /// </summary>
    protected virtual string ExtraRepr() => "";

    /// <summary>
    /// The architecture as torch prints it: the type name, the layer's settings, and each submodule
    /// as <c>(name): ...</c> on its own line, indented by nesting.
    /// </summary>
    public override string ToString()
    {
        string extra = ExtraRepr();
        var lines = new List<string>();
        if (extra.Length > 0)
        {
            lines.AddRange(extra.Split('\n'));
        }
        foreach (var (name, child) in _modules)
        {
            lines.Add($"({name}): {child.ToString().Replace("\n", "\n  ", StringComparison.Ordinal)}");
        }
        var sb = new System.Text.StringBuilder(GetType().Name).Append('(');
        if (lines.Count == 1 && _modules.Count == 0)
        {
            sb.Append(lines[0]);
        }
        else if (lines.Count > 0)
        {
            sb.Append("\n  ").AppendJoin("\n  ", lines).Append('\n');
        }
        return sb.Append(')').ToString();
    }

    /// <summary>Formats a number as Python's <c>repr</c> of a float does (<c>0.1</c>, <c>1e-05</c>, <c>1.0</c>).</summary>
    protected static string Py(double value)
    {
        string s = value.ToString("R", System.Globalization.CultureInfo.InvariantCulture).Replace("E", "e", StringComparison.Ordinal);
        return s.Contains('.', StringComparison.Ordinal) || s.Contains('e', StringComparison.Ordinal) || !double.IsFinite(value) ? s : s + ".0";
    }

    /// <summary>Formats a pair as a Python tuple, <c>(3, 3)</c>.</summary>
    protected static string Py(Size2d value) => $"({value.Height}, {value.Width})";

    /// <summary>Formats a flag as torch prints Python booleans.</summary>
    protected static string Py(bool value) => value ? "True" : "False";

    private static string Join(string prefix, string name) => prefix.Length == 0 ? name : prefix + "." + name;
}
